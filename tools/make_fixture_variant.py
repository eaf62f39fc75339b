#!/usr/bin/env python3
"""Writes a second fixture set of the same format as tests/fixtures/ with other sampling settings,
so that the C++ fixture tests can be run on it (MVAR_FIXTURE_DIR=<out>) and shown to read every
setting — labels, batch, cfg, top-k/top-p, seed, the CFG rows — from the fixture files.

    make_fixture_variant.py SRC_DIR OUT_DIR [--var k=v ...] [--mvar k=v ...]
    keys: labels=5,980  cfg=2.0  top_k=50  top_p=0.8  seed=11

What it keeps: the weights (tiny.transformer / tiny.vae / units.safetensors are copied) and the
architecture. What it recomputes: every trace and greedy tensor, with bench/torch_reference.py —
the project's PyTorch re-statement of the official VAR/MVAR inference, which
tests/test_torch_reference.py checks against the official fixtures (every intermediate within the
fixtures README's tolerances, greedy pyramids identical). It is NOT the official code: token draws
come from torch.multinomial on the reference's masked probabilities (the C++ tests teacher-force
them, so they only have to be a valid draw), and MVAR with cfg = 1 drops the unconditional half as
the official MVAR does (cfg_doubled_batch false: R = B rows, no logits_uncond).
Defaults: VAR labels 5,980 (batch 2), cfg 2.0, top_k 50, top_p 0.8, seed 11;
          MVAR labels 1,500 (batch 2), cfg 1.0, top_k 100, top_p 0.9, seed 5.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
sys.path.insert(0, os.path.join(HERE, "train"))
import torch_reference as ref  # noqa: E402
from st_io import save_file  # noqa: E402

DEFAULTS = {"var": {"labels": [5, 980], "cfg": 2.0, "top_k": 50, "top_p": 0.8, "seed": 11},
            "mvar": {"labels": [1, 500], "cfg": 1.0, "top_k": 100, "top_p": 0.9, "seed": 5}}


def parse_settings(model, items):
    s = dict(DEFAULTS[model])
    for it in items or []:
        k, v = it.split("=", 1)
        if k == "labels":
            s[k] = [int(x) for x in v.split(",")]
        elif k in ("top_k", "seed"):
            s[k] = int(v)
        elif k in ("cfg", "top_p"):
            s[k] = float(v)
        else:
            sys.exit(f"unknown key {k!r} (labels, cfg, top_k, top_p, seed)")
    return s


def logit_tokens(pn, s):
    """The trace's stored logit rows: all tokens for s ≤ 2, else token 0 and the centre token."""
    n = pn * pn
    return list(range(n)) if s <= 2 else [0, (pn // 2) * pn + pn // 2]


def run_model(model, src, out, tw, vw, st):
    with open(os.path.join(src, f"{model}_tiny.config.json")) as f:
        jc = json.load(f)
    cfg = ref.Config.from_fixture_json(jc)
    g = ref.Generator(cfg, tw, vw, model)
    labels = torch.tensor(st["labels"], dtype=torch.int64)
    B = labels.shape[0]
    doubled = not (model == "mvar" and st["cfg"] == 1.0)

    got = {}

    def hook(name, t):
        got[name] = t.detach().clone()

    fhat, img_dec, img, idx = g.generate(labels, st["cfg"], st["top_k"], st["top_p"], seed=st["seed"], hook=hook)
    trace = {"labels": labels, "img_dec": img_dec.contiguous(), "img_u8": img}
    for s in range(cfg.S):
        pn = cfg.patch_nums[s]
        tok = torch.tensor(logit_tokens(pn, s), dtype=torch.int64)
        raw, mixed = got[f"logits_raw.s{s}"], got[f"logits_mixed.s{s}"]
        assert raw.shape[0] == (2 * B if doubled else B)
        trace[f"idx.s{s}"] = idx[s].to(torch.int64)
        trace[f"x_in.s{s}"] = got[f"x_in.s{s}"]
        for i in range(cfg.depth):
            trace[f"h.s{s}.b{i}"] = got[f"h.s{s}.b{i}"]
        trace[f"logit_tok.s{s}"] = tok
        trace[f"logits_cond.s{s}"] = raw[:B, tok].contiguous()
        if doubled:
            trace[f"logits_uncond.s{s}"] = raw[B:, tok].contiguous()
        trace[f"logits_mixed.s{s}"] = mixed[:, tok].contiguous()
        trace[f"lse_raw.s{s}"] = ref.lse(raw)
        trace[f"lse_mixed.s{s}"] = ref.lse(mixed)
        trace[f"fhat.s{s}"] = got[f"fhat.s{s}"]
        if s < cfg.S - 1:
            trace[f"next_in.s{s}"] = got[f"next_in.s{s}"]

    got.clear()
    gf, _, gimg, gidx = g.generate(labels, st["cfg"], 1, 0.0, seed=0, hook=hook)
    greedy = {"labels": labels, "fhat.s9": gf, "img_u8": gimg}
    for s in range(cfg.S):
        mixed = got[f"logits_mixed.s{s}"]
        top2 = mixed.topk(2, dim=-1).values
        greedy[f"idx.s{s}"] = gidx[s].to(torch.int64)
        greedy[f"margin.s{s}"] = (top2[..., 0] - top2[..., 1]).contiguous()
        greedy[f"lse_mixed.s{s}"] = ref.lse(mixed)

    save_file(trace, os.path.join(out, jc["trace_file"]))
    save_file(greedy, os.path.join(out, jc["greedy_file"]))
    jc.update({"batch": B, "labels": st["labels"], "cfg": st["cfg"], "top_k": st["top_k"], "top_p": st["top_p"],
               "sample_seed": st["seed"], "cfg_doubled_batch": doubled,
               "generated_by": "tools/make_fixture_variant.py (bench/torch_reference.py; weights of the official set)"})
    jc.pop("reference_stats", None)
    with open(os.path.join(out, f"{model}_tiny.config.json"), "w") as f:
        json.dump(jc, f, indent=1)
    print(f"{model}: labels {st['labels']}, cfg {st['cfg']}, top_k {st['top_k']}, top_p {st['top_p']}, "
          f"seed {st['seed']}, CFG rows {'2B' if doubled else 'B'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--var", nargs="*")
    ap.add_argument("--mvar", nargs="*")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    for f in ("tiny.transformer.safetensors", "tiny.vae.safetensors", "units.safetensors", "README.md"):
        shutil.copy(os.path.join(a.src, f), os.path.join(a.out, f))
    tw = ref.load_safetensors(os.path.join(a.src, "tiny.transformer.safetensors"))
    vw = ref.load_safetensors(os.path.join(a.src, "tiny.vae.safetensors"))
    run_model("var", a.src, a.out, tw, vw, parse_settings("var", a.var))
    run_model("mvar", a.src, a.out, tw, vw, parse_settings("mvar", a.mvar))
    with open(os.path.join(a.out, "MANIFEST.sha256"), "w") as m:
        for f in sorted(os.listdir(a.out)):
            if f.endswith(".safetensors"):
                with open(os.path.join(a.out, f), "rb") as fh:
                    m.write(f"{hashlib.sha256(fh.read()).hexdigest()}  {f}\n")


if __name__ == "__main__":
    main()
