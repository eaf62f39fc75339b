#!/usr/bin/env python3
"""The official VAR or MVAR code on a checkpoint in the official layout: one image, batch 1 + CFG,
timed by phase, with the peak RSS of each phase — the PyTorch side of the side-by-side runs in
docs/zoo.md (VAR-d36) and docs/performance.md (d16; bench_d36, bench_generate and `generate` are
mvar's side).

  official_run.py --code var --src VAR_DIR --transformer var_d36.pth --vae vae_ch160v4096z32.pth \
                  --depth 36 --shared-aln --pn 512 [--threads 2] [--bf16] [--seed 0] [--tuned]
  official_run.py --code mvar --src MVAR_DIR --transformer var_d16.pth --vae vae.pth --depth 16

VAR_DIR is a checkout of https://github.com/FoundationVision/VAR, MVAR_DIR of
https://github.com/CVL-UESTC/MVAR (their models/ and dist helpers are imported; nothing of them is
copied here). Stand-ins are registered for modules that are missing and not used on this path:
natten.na2d (no CPU kernels; NATTEN's window rule through bench/torch_reference.py's
na_additive_mask over full attention), einops.rearrange (Debian 12 has no einops) and
huggingface_hub.PyTorchModelHubMixin (imported by both models, unused for inference). VAR and
MVAR checkpoints share one key set, so one random file serves both.

The model is built by the official build_vae_var / build_vae_mvar, its random parameters are
dropped at once, and the state dict's tensors are put in their place without a second copy (torch
1.13 has no mmap/assign loading), so the load peaks at about one checkpoint. The VAE file may hold
only the decoder and quantizer (tools/make_var_checkpoint.py --vae): the encoder stays empty, and
decoding does not use it.

Timing: sampling and decoding are split by wrapping the VAE's fhat_to_img; per-scale times come
from the calls of get_logits (one per scale); --warmup untimed runs, then --reps timed ones (the
median is printed). Peak RSS: VmHWM, restarted (/proc/self/clear_refs) after loading, so
`sampling_peak_MiB` is the sampling phase's own and `load_peak_MiB` the load's. --bf16 runs under
torch.autocast('cpu', bfloat16) (weights stay fp32, as autocast does; where this torch cannot
decode under autocast the decoder runs in fp32, and the JSON says so). --tuned re-executes the
script with bench/compare_torch.py's tuned environment (OpenBLAS, jemalloc). Prints one JSON line.
"""
import argparse
import json
import math
import os
import re
import sys
import time
import types

sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # compare_torch, torch_reference
PN = {"256": (1, 2, 3, 4, 5, 6, 8, 10, 13, 16), "512": (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)}


def vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def restart_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def install_standin(name, **attrs):
    """Registers module `name` holding `attrs` unless the real package imports."""
    try:
        __import__(name)
    except ImportError:
        mod = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(mod, k, v)
        sys.modules[name] = mod


_na_masks = {}


def na2d_standin(q, k, v, kernel_size, dilation=1, scale=None):  # q, k, v: B H W heads d
    """natten.na2d with NATTEN's window rule: full attention under an additive window mask."""
    from torch_reference import na_additive_mask
    assert dilation == 1
    B, H, W, nh, d = q.shape
    assert H == W, "square maps only"
    if (H, kernel_size) not in _na_masks:
        _na_masks[(H, kernel_size)] = na_additive_mask(H, kernel_size)
    m = _na_masks[(H, kernel_size)].to(q.dtype)
    qh, kh, vh = (t.reshape(B, H * W, nh, d).transpose(1, 2) for t in (q, k, v))
    att = (qh * (scale if scale is not None else d ** -0.5)) @ kh.transpose(-2, -1) + m
    out = att.softmax(-1) @ vh
    return out.transpose(1, 2).reshape(B, H, W, nh, d)


def rearrange_standin(t, pattern, **sizes):
    """einops.rearrange for patterns without an ellipsis (all MVAR's attention uses)."""
    def groups(side):
        return [g[1:-1].split() if g.startswith("(") else [g] for g in re.findall(r"\([^)]*\)|\S+", side)]
    lhs, rhs = (groups(x) for x in pattern.split("->"))
    assert len(lhs) == t.dim(), pattern
    size = dict(sizes)
    for g, n in zip(lhs, t.shape):
        free = [ax for ax in g if ax not in size]
        assert len(free) <= 1, pattern
        if free:
            size[free[0]] = n // math.prod(size[ax] for ax in g if ax in size)
    flat = [ax for g in lhs for ax in g]
    out = t.reshape([size[ax] for ax in flat]).permute([flat.index(ax) for g in rhs for ax in g])
    return out.reshape([math.prod(size[ax] for ax in g) for g in rhs])


def unused_standin(*args, **kw):
    raise NotImplementedError("a stand-in of bench/official_run.py was called")


def tuned_env(threads):
    from compare_torch import config_env, find_openblas  # the one definition of "tuned"
    env, _ = config_env("tuned", find_openblas(None))
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(threads)
    env["MVAR_OFFICIAL_TUNED"] = "1"
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--code", choices=("var", "mvar"), default="var")
    ap.add_argument("--src", required=True, help="checkout of the official repository")
    ap.add_argument("--transformer", required=True)
    ap.add_argument("--vae", required=True)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--shared-aln", action="store_true")
    ap.add_argument("--pn", choices=sorted(PN), default="256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", type=int, default=980)
    ap.add_argument("--cfg", type=float, default=1.5)
    ap.add_argument("--top-k", type=int, default=900)
    ap.add_argument("--top-p", type=float, default=0.96)
    ap.add_argument("--warmup", type=int, default=1, help="untimed generations first")
    ap.add_argument("--reps", type=int, default=1, help="timed generations (the median is printed)")
    ap.add_argument("--tuned", action="store_true", help="re-run under compare_torch.py's tuned env")
    ap.add_argument("--out", help="write the image as a .npy (uint8 HWC)")
    a = ap.parse_args()
    if a.tuned and not os.environ.get("MVAR_OFFICIAL_TUNED"):
        os.execve(sys.executable, [sys.executable] + sys.argv, tuned_env(a.threads))

    import torch
    torch.set_num_threads(a.threads)
    sys.path.insert(0, os.path.abspath(a.src))
    t0 = time.perf_counter()
    common = dict(device="cpu", patch_nums=PN[a.pn], depth=a.depth, shared_aln=a.shared_aln,
                  flash_if_available=False, fused_if_available=False)
    # models/var.py and mvar.py import a hub mixin they do not need for inference
    install_standin("huggingface_hub", PyTorchModelHubMixin=type("PyTorchModelHubMixin", (), {}))
    if a.code == "var":
        from models import build_vae_var  # the official code
        vae, var = build_vae_var(**common)
    else:
        install_standin("natten", na2d=na2d_standin)
        install_standin("einops", rearrange=rearrange_standin, repeat=unused_standin)
        from models import build_vae_mvar  # the official code
        vae, var = build_vae_mvar(kernel_size=7, refine_step=8, **common)
    for m in (var, vae):  # drop the random parameters before the checkpoint arrives
        for p in list(m.parameters()) + list(m.buffers()):
            p.data = torch.empty(0, dtype=p.dtype)
    for module, path, strict in ((var, a.transformer, True), (vae, a.vae, False)):
        sd = torch.load(path, map_location="cpu")
        if "mvar_wo_ddp" in sd:
            sd = sd["mvar_wo_ddp"]
        own = dict(module.named_parameters())
        own.update(dict(module.named_buffers()))
        missing = [k for k in own if k not in sd]
        if strict and missing:
            sys.exit(f"{path}: missing {missing[:5]}")
        for k, t in sd.items():
            if k in own:
                if own[k].dtype != t.dtype:
                    t = t.to(own[k].dtype)
                own[k].data = t
        del sd
    for n, p in list(var.named_parameters()) + [(n, p) for n, p in vae.named_parameters()
                                                  if not n.startswith(("encoder.", "quant_conv."))]:
        if p.numel() == 0:
            sys.exit(f"parameter {n} not loaded")
    var.eval()
    vae.eval()
    load_s = time.perf_counter() - t0
    load_peak = vm("VmHWM")

    stamps = []
    get_logits = var.get_logits

    def timed_get_logits(*args, **kw):
        out = get_logits(*args, **kw)
        stamps.append(time.perf_counter())
        return out
    var.get_logits = timed_get_logits
    dec = {}
    fhat_to_img = vae.fhat_to_img

    def timed_fhat_to_img(f_hat):
        dec["t0"] = time.perf_counter()
        dec["sampling_peak"] = vm("VmHWM")
        restart_peak()
        try:
            img = fhat_to_img(f_hat.float())
        except RuntimeError:  # torch 1.13's CPU autocast has no bf16 group_norm: decode in fp32
            if not a.bf16:
                raise
            with torch.autocast("cpu", enabled=False):
                img = fhat_to_img(f_hat.float())
            dec["decoder_dtype"] = "fp32 (bf16 autocast failed in this torch)"
        dec["t1"] = time.perf_counter()
        return img
    vae.fhat_to_img = timed_fhat_to_img

    def once():
        stamps.clear()
        restart_peak()
        t1 = time.perf_counter()
        with torch.inference_mode():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                if a.code == "var":
                    img = var.autoregressive_infer_cfg(B=1, label_B=a.label, g_seed=a.seed, cfg=a.cfg,
                                                       top_k=a.top_k, top_p=a.top_p, more_smooth=False)
                else:
                    f_hat = var.autoregressive_infer(B=1, label_B=torch.tensor([a.label]), g_seed=a.seed,
                                                     cfg=a.cfg, top_k=a.top_k, top_p=a.top_p,
                                                     more_smooth=False)
                    img = vae.fhat_to_img(f_hat.clone()).add_(1).mul_(0.5)
        t2 = time.perf_counter()
        starts = [t1] + stamps[:-1]
        return img, {"sample_s": dec["t0"] - t1, "decode_s": dec["t1"] - dec["t0"], "total_s": t2 - t1,
                     "per_scale_s": [e - s for s, e in zip(starts, stamps)],
                     "sampling_peak_MiB": dec["sampling_peak"], "decoding_peak_MiB": vm("VmHWM")}

    base = vm("VmRSS")
    for _ in range(a.warmup):
        once()
    runs = [once() for _ in range(a.reps)]
    img = runs[-1][0]
    runs = sorted((r for _, r in runs), key=lambda r: r["total_s"])
    med = runs[len(runs) // 2]  # the median run (the upper one of an even count)
    res = {
        "code": "official " + ("VAR (FoundationVision/VAR)" if a.code == "var" else "MVAR (CVL-UESTC/MVAR)"),
        "torch": torch.__version__, "tuned": bool(os.environ.get("MVAR_OFFICIAL_TUNED")),
        "threads": a.threads, "dtype": "bf16 autocast" if a.bf16 else "fp32", "depth": a.depth,
        "pn": a.pn, "warmup": a.warmup, "reps": a.reps, "load_s": round(load_s, 2),
        "sample_s": round(med["sample_s"], 3), "decode_s": round(med["decode_s"], 3),
        "total_s": round(med["total_s"], 3), "total_s_all": [round(r["total_s"], 3) for r in runs],
        "per_scale_s": [round(x, 3) for x in med["per_scale_s"]],
        "resident_after_load_MiB": round(base), "load_peak_MiB": round(load_peak),
        "sampling_peak_MiB": round(max(r["sampling_peak_MiB"] for r in runs)),
        "decoding_peak_MiB": round(max(r["decoding_peak_MiB"] for r in runs)),
        "image_shape": list(img.shape),
        "decoder_dtype": dec.get("decoder_dtype", "bf16 autocast" if a.bf16 else "fp32"),
    }
    if a.out:
        import numpy as np
        u8 = (img[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        np.save(a.out, u8)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
