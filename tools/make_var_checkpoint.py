#!/usr/bin/env python3
"""Write a random VAR checkpoint in the official layout with torch.save (a plain state dict, as the
official var_d*.pth / vae_ch160v4096z32.pth): for memory and speed runs of models whose weights are
not at hand (VAR-d36 at 512 px: 2,353,893,904 parameters, 9.4 GB in float32).

  make_var_checkpoint.py --preset d36 --out var_d36.pth            # transformer, shared AdaLN, 512 px
  make_var_checkpoint.py --vae --out vae_ch160v4096z32.pth         # the official VQVAE's decoder keys
  make_var_checkpoint.py --check-layout tests/fixtures             # key/shape set vs the official fixture

The key set and shapes are those of the official VAR (models/var.py, basic_var.py, built by
build_vae_var(depth, shared_aln, patch_nums)), buffers included (lvl_1L, attn_bias_for_masking,
zero_k_bias). --check-layout builds the fixtures' saln512_tiny sizes with this script's rules and
compares them with saln512_tiny.transformer.safetensors, which the official code wrote (that file
omits only attn_bias_for_masking). Values are random of plausible magnitude: only sizes matter.
Tensors are generated one at a time into the dict, so the peak is about the file size.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from torch_reference import Config, vae_shapes  # noqa: E402  (the decoder's official shapes)

PN256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PN512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
V, CVAE, NUM_CLASSES = 4096, 32, 1000

PRESETS = {  # build_vae_var: heads = depth, width = 64·depth; d36 with shared_aln=True, --pn=512
    "d16": (16, False, PN256), "d20": (20, False, PN256), "d24": (24, False, PN256),
    "d30": (30, False, PN256), "d36": (36, True, PN512),
}


def transformer_shapes(depth, C, H, shared_aln, patch_nums, with_mask=True):
    L = sum(p * p for p in patch_nums)
    sh = {"pos_start": (1, 1, C), "pos_1LC": (1, L, C), "lvl_1L": (1, L)}
    if with_mask:
        sh["attn_bias_for_masking"] = (1, 1, L, L)
    sh.update({"word_embed.weight": (C, CVAE), "word_embed.bias": (C,),
               "class_emb.weight": (NUM_CLASSES + 1, C), "lvl_embed.weight": (len(patch_nums), C)})
    if shared_aln:
        sh.update({"shared_ada_lin.1.weight": (6 * C, C), "shared_ada_lin.1.bias": (6 * C,)})
    for i in range(depth):
        p = f"blocks.{i}."
        if shared_aln:
            sh[p + "ada_gss"] = (1, 1, 6, C)
        sh.update({p + "attn.scale_mul_1H11": (1, H, 1, 1), p + "attn.q_bias": (C,),
                   p + "attn.v_bias": (C,), p + "attn.zero_k_bias": (C,),
                   p + "attn.mat_qkv.weight": (3 * C, C), p + "attn.proj.weight": (C, C),
                   p + "attn.proj.bias": (C,), p + "ffn.fc1.weight": (4 * C, C),
                   p + "ffn.fc1.bias": (4 * C,), p + "ffn.fc2.weight": (C, 4 * C), p + "ffn.fc2.bias": (C,)})
        if not shared_aln:
            sh.update({p + "ada_lin.1.weight": (6 * C, C), p + "ada_lin.1.bias": (6 * C,)})
    sh.update({"head_nm.ada_lin.1.weight": (2 * C, C), "head_nm.ada_lin.1.bias": (2 * C,),
               "head.weight": (V, C), "head.bias": (V,)})
    return sh


def parameters(shapes):
    """Parameters as the official model counts them (buffers lvl_1L, the mask, zero_k_bias out)."""
    n = 0
    for k, s in shapes.items():
        if k in ("lvl_1L", "attn_bias_for_masking") or k.endswith("zero_k_bias"):
            continue
        n += math.prod(s)
    return n


def fill(name, shape, g, patch_nums=None):
    if name == "lvl_1L":
        return torch.cat([torch.full((p * p,), i, dtype=torch.int64) for i, p in enumerate(patch_nums)]).view(1, -1)
    if name == "attn_bias_for_masking":
        d = torch.cat([torch.full((p * p,), i) for i, p in enumerate(patch_nums)]).view(1, -1, 1)
        return torch.where(d >= d.transpose(1, 2), 0.0, -torch.inf).reshape(shape).float().contiguous()
    if name.endswith("scale_mul_1H11"):
        return torch.full(shape, math.log(4.0))
    if name.endswith("zero_k_bias"):
        return torch.zeros(shape)
    if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "norm_out.weight")):
        return torch.ones(shape)
    t = torch.empty(shape)
    if len(shape) >= 2 and not name.startswith("pos") and "emb" not in name and "ada_gss" not in name:
        return t.normal_(0.0, 0.5 / math.sqrt(math.prod(shape[1:])), generator=g)
    return t.normal_(0.0, 0.02, generator=g)


def safetensors_shapes(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return {k: tuple(v["shape"]) for k, v in h.items() if k != "__metadata__"}


def check_layout(fixdir):
    cfg = json.load(open(os.path.join(fixdir, "var512_saln_tiny.config.json")))
    ours = transformer_shapes(cfg["depth"], cfg["embed_dim"], cfg["num_heads"], cfg["shared_aln"],
                              tuple(cfg["patch_nums"]), with_mask=False)
    official = safetensors_shapes(os.path.join(fixdir, cfg["transformer_file"]))
    missing = sorted(set(official) - set(ours))
    extra = sorted(set(ours) - set(official))
    wrong = sorted(k for k in set(ours) & set(official) if ours[k] != official[k])
    ok = not (missing or extra or wrong)
    print(json.dumps({"layout_matches_official_fixture": ok, "keys": len(official), "missing": missing,
                      "extra": extra, "wrong_shape": wrong}))
    d36 = transformer_shapes(36, 64 * 36, 36, True, PN512)
    print(json.dumps({"d36_parameters": parameters(d36), "d36_keys": len(d36),
                      "d36_fp32_bytes": sum(math.prod(s) for s in d36.values()) * 4}))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="d36")
    ap.add_argument("--vae", action="store_true", help="write the official VQVAE (decoder + quantizer keys)")
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check-layout", metavar="FIXTURE_DIR")
    args = ap.parse_args()
    if args.check_layout:
        sys.exit(0 if check_layout(args.check_layout) else 1)
    if not args.out:
        ap.error("--out is required")
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    if args.vae:
        shapes, pn = vae_shapes(Config(depth=16, C=1024, H=16, vae_ch=160)), PN256
        shapes["quantize.ema_vocab_hit_SV"] = (len(PN256), V)   # unused buffer the official file holds
    else:
        depth, shared, pn = PRESETS[args.preset]
        shapes = transformer_shapes(depth, 64 * depth, depth, shared, pn)
    sd = {}
    for name, shape in shapes.items():
        sd[name] = fill(name, shape, g, pn)
    gen_s = time.perf_counter() - t0
    tmp = args.out + ".part"
    torch.save(sd, tmp)
    os.replace(tmp, args.out)
    print(json.dumps({"out": args.out, "keys": len(sd), "parameters": parameters(shapes),
                      "bytes": os.path.getsize(args.out), "generate_s": round(gen_s, 1),
                      "total_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
