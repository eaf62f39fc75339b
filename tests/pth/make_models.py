#!/usr/bin/env python3
"""Writes the torch-side fixtures of tests/test_pth.cpp into OUTDIR, and checks the converter.

    make_models.py OUTDIR        (exit 77 = torch missing: CTest reports the test as skipped)

For each of  var_tiny / mvar_tiny  ×  fp32 / bf16  a small random model in the official VAR layout
(2 blocks, C = 16, 2 heads, patch_nums 1..4 → L = 30, vocab 64, Cvae 8, every official key
including the buffers lvl_1L, attn_bias_for_masking, zero_k_bias) is saved with torch.save — the
mvar_* ones inside MVAR's wrapper {"mvar_wo_ddp": state_dict, "epoch": …, "lr": …, "arch": …}, with
head.weight stored non-contiguous (a transposed view) and q_bias / v_bias sharing one storage at
different offsets. vae_tiny.pth holds a few VQVAE keys (encoder ones included). Each gets a
safetensors twin written by tools/convert_checkpoint.py (same dtype), which the C++ test compares
tensor by tensor. The converter's refusals (unknown key set, forbidden global) are checked here.
"""
import collections
import contextlib
import io
import os
import sys

try:
    import torch
except ImportError:
    print("SKIPPED: python3 cannot import torch (Debian: apt-get install python3-torch)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import convert_checkpoint  # noqa: E402  (in-process: one torch import for the whole run)

C, HEADS, DEPTH, VOCAB, CVAE, PN = 16, 2, 2, 64, 8, (1, 2, 3, 4)
L = sum(p * p for p in PN)


def var_state_dict(g, dtype):
    r = lambda *s: torch.randn(*s, generator=g).to(dtype)
    sd = collections.OrderedDict()
    sd["pos_start"] = r(1, 1, C)
    sd["pos_1LC"] = r(1, L, C)
    lvl = torch.cat([torch.full((p * p,), i) for i, p in enumerate(PN)]).view(1, L)
    sd["lvl_1L"] = lvl.to(torch.int64)
    mask = torch.where(lvl.view(L, 1) >= lvl.view(1, L), 0.0, float("-inf"))
    sd["attn_bias_for_masking"] = mask.view(1, 1, L, L).to(dtype)
    sd["word_embed.weight"], sd["word_embed.bias"] = r(C, CVAE), r(C)
    sd["class_emb.weight"] = r(1001, C)
    sd["lvl_embed.weight"] = r(len(PN), C)
    for i in range(DEPTH):
        b = f"blocks.{i}."
        sd[b + "attn.scale_mul_1H11"] = r(1, HEADS, 1, 1)
        sd[b + "attn.q_bias"], sd[b + "attn.v_bias"] = r(C), r(C)
        sd[b + "attn.zero_k_bias"] = torch.zeros(C, dtype=dtype)
        sd[b + "attn.mat_qkv.weight"] = r(3 * C, C)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = r(C, C), r(C)
        sd[b + "ffn.fc1.weight"], sd[b + "ffn.fc1.bias"] = r(4 * C, C), r(4 * C)
        sd[b + "ffn.fc2.weight"], sd[b + "ffn.fc2.bias"] = r(C, 4 * C), r(C)
        sd[b + "ada_lin.1.weight"], sd[b + "ada_lin.1.bias"] = r(6 * C, C), r(6 * C)
    sd["head_nm.ada_lin.1.weight"], sd["head_nm.ada_lin.1.bias"] = r(2 * C, C), r(2 * C)
    sd["head.weight"], sd["head.bias"] = r(VOCAB, C), r(VOCAB)
    sd._metadata = collections.OrderedDict({"": {"version": 1}})  # as Module.state_dict() has
    return sd


def vae_state_dict(g):
    r = lambda *s: torch.randn(*s, generator=g)
    sd = collections.OrderedDict()
    sd["encoder.conv_in.weight"], sd["encoder.conv_in.bias"] = r(4, 3, 3, 3), r(4)
    sd["quant_conv.weight"], sd["quant_conv.bias"] = r(CVAE, CVAE, 3, 3), r(CVAE)
    sd["quantize.ema_vocab_hit_SV"] = r(len(PN), VOCAB)
    sd["quantize.embedding.weight"] = r(VOCAB, CVAE)
    sd["quantize.quant_resi.qresi_ls.0.weight"], sd["quantize.quant_resi.qresi_ls.0.bias"] = r(CVAE, CVAE, 3, 3), r(CVAE)
    sd["post_quant_conv.weight"], sd["post_quant_conv.bias"] = r(CVAE, CVAE, 3, 3), r(CVAE)
    sd["decoder.conv_in.weight"], sd["decoder.conv_in.bias"] = r(16, CVAE, 3, 3), r(16)
    sd["decoder.norm_out.weight"], sd["decoder.norm_out.bias"] = r(16), r(16)
    return sd


def convert(src, dst, *extra, expect_ok=True):
    """Runs the converter's command line in this process; returns what it printed to stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = convert_checkpoint.main([src, dst, *extra])
    if (rc == 0) != expect_ok:
        sys.exit(f"converter {'failed' if expect_ok else 'accepted'} {src}: {out.getvalue()}{err.getvalue()}")
    return err.getvalue()


def main(out):
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(2024)
    for dtype, tag, conv in ((torch.float32, "", "fp32"), (torch.bfloat16, "_bf16", "bf16")):
        sd = var_state_dict(g, dtype)
        torch.save(sd, os.path.join(out, f"var_tiny{tag}.pth"))
        sd = var_state_dict(g, dtype)
        sd["head.weight"] = sd["head.weight"].t().contiguous().t()  # same values, column-major storage
        qv = torch.cat([sd["blocks.0.attn.q_bias"], sd["blocks.0.attn.v_bias"]])
        sd["blocks.0.attn.q_bias"], sd["blocks.0.attn.v_bias"] = qv[:C], qv[C:]  # one storage, offsets 0 and C
        assert not sd["head.weight"].is_contiguous()
        torch.save({"mvar_wo_ddp": sd, "epoch": 3, "lr": 1e-4, "arch": "mvar_d2", "done": True, "best": None},
                   os.path.join(out, f"mvar_tiny{tag}.pth"))
        for name in ("var_tiny", "mvar_tiny"):
            convert(os.path.join(out, f"{name}{tag}.pth"), os.path.join(out, f"{name}{tag}.safetensors"), "--dtype", conv)
    torch.save(vae_state_dict(g), os.path.join(out, "vae_tiny.pth"))
    convert(os.path.join(out, "vae_tiny.pth"), os.path.join(out, "vae_tiny.safetensors"))

    # The converter refuses what it does not know, and never runs code.
    torch.save({"conv.weight": torch.zeros(2)}, os.path.join(out, "unknown.pth"))
    err = convert(os.path.join(out, "unknown.pth"), os.path.join(out, "unknown.safetensors"), expect_ok=False)
    assert "neither a VAR/MVAR key set" in err, err
    bad = dict(var_state_dict(g, torch.float32))
    bad["blocks.0.attn.extra"] = torch.zeros(1)
    torch.save(bad, os.path.join(out, "extra_key.pth"))
    err = convert(os.path.join(out, "extra_key.pth"), os.path.join(out, "extra_key.safetensors"), expect_ok=False)
    assert "unknown keys ['blocks.0.attn.extra']" in err, err

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + os.path.join(out, "PWNED"),))
    torch.save({"pos_start": Evil()}, os.path.join(out, "evil.pth"))
    err = convert(os.path.join(out, "evil.pth"), os.path.join(out, "evil.safetensors"), expect_ok=False)
    assert "system" in err and not os.path.exists(os.path.join(out, "PWNED")), err
    # Training metadata beside MVAR's wrapper (issue #23 item 9), as the official demo's
    # weights_only=False checkpoints may hold: the C++ loader reads the state dict and turns the
    # rest into opaque placeholders; the same objects inside the state dict are refused.
    import argparse
    import pathlib
    import numpy as np
    sd = var_state_dict(g, torch.float32)
    torch.save(sd, os.path.join(out, "meta_plain.pth"))
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=1e-3)
    p.sum().backward()
    opt.step()
    meta = {"args": argparse.Namespace(lr=1e-4, depth=2, data=pathlib.PosixPath("/data/imagenet"), tags=["a"]),
            "out_dir": pathlib.PosixPath("/tmp/run"), "best_fid": np.float32(3.25), "step": np.int64(1234),
            "rng": np.random.RandomState(0).get_state(), "optimizer": opt.state_dict(), "epoch": 7}
    torch.save({"mvar_wo_ddp": sd, **meta}, os.path.join(out, "meta_beside.pth"))
    for k, v in meta.items():
        inside = collections.OrderedDict(sd)
        inside[k] = v
        torch.save({"mvar_wo_ddp": inside}, os.path.join(out, f"meta_inside_{k}.pth"))
    print(f"wrote fixtures to {out}; converter refusals ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
