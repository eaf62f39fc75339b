#!/usr/bin/env python3
"""One table from bench/device_run.sh's output folder.

  python3 bench/device_table.py OUT_DIR

Rows: thread counts. Columns: PyTorch fp32 and bf16 autocast — the official MVAR code
(bench/official_run.py, stage `official`) where the folder has it, else bench/torch_reference.py —, mvar
fp32 / bf16 / int8 weights — seconds per image, MVAR-d16 batch 1 + CFG, transformer + decoder
(mvar: the transformer of bench_generate plus its decode_d16: the fp32 Winograd decoder for fp32
and int8, the bf16 one for bf16 except on AMX CPUs, where the fp32 one is faster — the CLI's pairing), then the speed-ups over PyTorch.
Also: batch 16 at 16 threads, the AVX-512 forms beside AMX (MVAR_ISA=avx512), the official VAR
code's figures, and the pool's spin A/B (stage `spin`).
"""
import glob
import json
import os
import re
import sys


def load_mvar(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    out = {}
    for b in data.get("benchmarks", []):
        name = b["name"].split("/iterations")[0]
        out[name] = b
    return out


def load_torch(path):
    try:
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("kind") == "summary":
                    return rec
    except (OSError, ValueError):
        pass
    return None


def load_official(path):
    """The JSON line bench/official_run.py printed last (the official code prints above it)."""
    try:
        with open(path) as f:
            lines = [l for l in f if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def load_pytorch(out, mode, threads, code="mvar"):
    """PyTorch at `threads`, mode fp32 | bf16: {seconds_per_image, transformer_seconds, per_scale,
    source} from the official code's run if the folder has one, else from torch_reference.py's."""
    off = load_official(os.path.join(out, f"official_{code}_{mode}_t{threads}.json"))
    if off:
        return {"seconds_per_image": off["total_s"], "transformer_seconds": off["sample_s"],
                "per_scale": off["per_scale_s"], "source": off["code"]}
    if code != "mvar":
        return None
    ref = load_torch(os.path.join(out, f"torch_{mode}_t{threads}.jsonl"))
    if not ref:
        return None
    return {"seconds_per_image": ref["seconds_per_image"],
            "transformer_seconds": ref["median"]["transformer_seconds"],
            "per_scale": [ref["median"][f"s{s}_seconds"] for s in range(10)],
            "source": "bench/torch_reference.py"}


def fmt(x, nd=2):
    return "—" if x is None else f"{x:.{nd}f}"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/mvar_device_out"
    try:
        print(open(os.path.join(out, "machine.txt")).read().strip())
    except OSError:
        pass
    threads = sorted({int(m.group(1)) for p in glob.glob(os.path.join(out, "mvar_t*.json"))
                      if (m := re.search(r"mvar_t(\d+)\.json$", p))})
    print("\nMVAR-d16, batch 1 + CFG, seconds per image (transformer + decoder; transformer alone in brackets)")
    print("| threads | PyTorch fp32 | PyTorch bf16 autocast | mvar fp32 | mvar bf16 | mvar int8 | fp32 vs PyTorch fp32 | bf16 vs PyTorch bf16 | int8 vs PyTorch bf16 |")
    print("|---|---|---|---|---|---|---|---|---|")
    sources = set()
    for t in threads:
        m = load_mvar(os.path.join(out, f"mvar_t{t}.json"))
        dec32 = m.get("decode_d16/0", {}).get("decode_seconds")
        dec16 = m.get("decode_d16/1", {}).get("decode_seconds")
        def mv(name, dec):
            tr = m.get(name, {}).get("total_seconds")
            return (tr + dec if tr is not None and dec is not None else None), tr
        f32, f32t = mv("mvar_d16/1", dec32)
        # The CLI's pairing: bf16 weights with the bf16 Winograd decoder, except on AMX CPUs
        # (isa counter 3), where the fp32 decoder is the faster one.
        amx = m.get("mvar_d16_bf16/1", {}).get("isa", 0) >= 3
        b16, b16t = mv("mvar_d16_bf16/1", dec32 if amx else dec16)
        i8, i8t = mv("mvar_d16_int8/1", dec32)
        tf, tb = load_pytorch(out, "fp32", t), load_pytorch(out, "bf16", t)
        pf = tf["seconds_per_image"] if tf else None
        pb = tb["seconds_per_image"] if tb else None
        pft = tf["transformer_seconds"] if tf else None
        pbt = tb["transformer_seconds"] if tb else None
        sources.update(x["source"] for x in (tf, tb) if x)
        ratio = lambda a, b: f"{a / b:.2f}×" if a and b else "—"
        print(f"| {t} | {fmt(pf)} ({fmt(pft)}) | {fmt(pb)} ({fmt(pbt)}) | {fmt(f32)} ({fmt(f32t)}) | {fmt(b16)} ({fmt(b16t)}) "
              f"| {fmt(i8)} ({fmt(i8t)}) | {ratio(pf, f32)} | {ratio(pb, b16)} | {ratio(pb, i8)} |")
    print("PyTorch:", ", ".join(sorted(sources)) or "—")
    for t in threads:
        vf, vb = load_pytorch(out, "fp32", t, "var"), load_pytorch(out, "bf16", t, "var")
        if vf or vb:
            print(f"official VAR-d16, {t} threads: fp32 {fmt(vf and vf['seconds_per_image'])} s, "
                  f"bf16 autocast {fmt(vb and vb['seconds_per_image'])} s")
    for t in threads:
        m = load_mvar(os.path.join(out, f"mvar_t{t}.json"))
        d = m.get("decode_d16/0", {}).get("decode_seconds"), m.get("decode_d16/1", {}).get("decode_seconds")
        print(f"decoder, {t} threads: fp32 {fmt(d[0], 3)} s, bf16 Winograd {fmt(d[1], 3)} s")
    m = load_mvar(os.path.join(out, "mvar_t16_b16.json"))
    if m:
        print("\nbatch 16, 16 threads, transformer seconds per image:",
              ", ".join(f"{n.split('/')[0]} {fmt(b.get('seconds_per_image'), 3)}" for n, b in m.items()))
    m = load_mvar(os.path.join(out, "mvar_t16_avx512.json"))
    amx = load_mvar(os.path.join(out, "mvar_t16.json"))
    if m:
        print("AVX-512 forms (MVAR_ISA=avx512) vs the default, 16 threads, transformer s:",
              ", ".join(f"{n} {fmt(b.get('total_seconds'), 3)} vs {fmt(amx.get(n, {}).get('total_seconds'), 3)}"
                        for n, b in m.items()))
    for p in sorted(glob.glob(os.path.join(out, "mvar_order_*.json"))):
        m = load_mvar(p)
        print(os.path.basename(p)[5:-5] + ":", ", ".join(f"{n} {fmt(b.get('total_seconds'), 3)} s" for n, b in m.items()))
    spins = {}
    for p in sorted(glob.glob(os.path.join(out, "mvar_spin_t*_r*.json"))):
        t, variant = re.search(r"mvar_spin_t(\d+)_(\w+?)_r\d+\.json$", p).groups()
        for n, b in load_mvar(p).items():
            spins.setdefault((int(t), n), {}).setdefault(variant, []).append(b.get("total_seconds"))
    if spins:
        print("\npool A/B, transformer s per run (interleaved; 'before' = the MVAR_AB_INCLUDE build):")
        for (t, n), v in sorted(spins.items()):
            print(f"  {t} threads {n}: " + "; ".join(f"{k} " + " ".join(fmt(x, 3) for x in xs)
                                                    for k, xs in v.items()))
    for t in threads:
        m = load_mvar(os.path.join(out, f"mvar_t{t}.json"))
        for n, b in m.items():
            if n.startswith("mvar"):
                per = " ".join(fmt(b.get(f"s{s}_seconds"), 3) for s in range(10))
                print(f"per scale {n} t{t} (isa {int(b.get('isa', -1))}): {per}")


if __name__ == "__main__":
    main()
