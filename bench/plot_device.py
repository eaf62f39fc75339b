#!/usr/bin/env python3
"""Two SVG plots from a bench/device_run.sh output folder (no plotting library needed).

  python3 bench/plot_device.py RUN_DIR OUT_PREFIX

  OUT_PREFIX_per_scale.svg  time per scale (log scale), MVAR-d16 batch 1 + CFG, 16 threads:
                            PyTorch fp32 / bf16 autocast (the official MVAR code where the run
                            has it, else bench/torch_reference.py) and mvar fp32
                            / bf16 / int8 (bench_generate)
  OUT_PREFIX_threads.svg    speed-up over 2 threads vs threads (2, 8, 16): the transformer of each
                            mvar precision, mvar's fp32 decoder, PyTorch fp32 and bf16 (whole run)
"""
import json
import math
import os
import sys

COLORS = {"PyTorch fp32": "#888888", "PyTorch bf16": "#444444", "mvar fp32": "#1f77b4",
          "mvar bf16": "#ff7f0e", "mvar int8": "#2ca02c", "mvar decoder fp32": "#9467bd"}


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from device_table import load_mvar, load_pytorch  # noqa: E402  (one reader for both)


class Svg:
    def __init__(self, w, h):
        self.w, self.h, self.items = w, h, []

    def line(self, x1, y1, x2, y2, color="#000", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" stroke-width="{width}"{d}/>')

    def polyline(self, pts, color, width=2):
        p = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        self.items.append(f'<polyline points="{p}" fill="none" stroke="{color}" stroke-width="{width}"/>')
        for x, y in pts:
            self.items.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')

    def text(self, x, y, s, size=12, anchor="start", color="#000"):
        self.items.append(f'<text x="{x:.1f}" y="{y:.1f}" font-family="sans-serif" font-size="{size}" '
                          f'text-anchor="{anchor}" fill="{color}">{s}</text>')

    def save(self, path):
        with open(path, "w") as f:
            f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                    f'viewBox="0 0 {self.w} {self.h}">\n<rect width="100%" height="100%" fill="white"/>\n')
            f.write("\n".join(self.items))
            f.write("\n</svg>\n")


def chart(path, title, xlabels, series, ylabel, log=False, xs=None):
    """series: {name: [y or None per x]}; xs: x positions (default: evenly spaced labels)."""
    W, H, L, R, T, B = 760, 420, 70, 170, 40, 50
    svg = Svg(W, H)
    ys = [y for v in series.values() for y in v if y]
    lo, hi = min(ys), max(ys)
    if log:
        lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
        fy = lambda y: T + (H - T - B) * (math.log10(hi) - math.log10(y)) / (math.log10(hi) - math.log10(lo))
        ticks = [10 ** e for e in range(int(math.log10(lo)), int(math.log10(hi)) + 1)]
    else:
        lo, hi = 0, math.ceil(hi)
        fy = lambda y: T + (H - T - B) * (hi - y) / (hi - lo)
        ticks = list(range(0, int(hi) + 1))
    xs = xs or list(range(len(xlabels)))
    x0, x1 = min(xs), max(xs)
    fx = lambda x: L + (W - L - R) * (x - x0) / ((x1 - x0) or 1)
    svg.text(W / 2 - R / 2, 22, title, 14, "middle")
    svg.line(L, H - B, W - R, H - B)
    svg.line(L, T, L, H - B)
    for t in ticks:
        svg.line(L, fy(t), W - R, fy(t), "#ddd")
        svg.text(L - 6, fy(t) + 4, f"{t:g}", 11, "end")
    for x, lab in zip(xs, xlabels):
        svg.text(fx(x), H - B + 18, str(lab), 11, "middle")
    svg.text(18, (T + H - B) / 2, ylabel, 12, "middle")
    for i, (name, v) in enumerate(series.items()):
        pts = [(fx(x), fy(y)) for x, y in zip(xs, v) if y]
        svg.polyline(pts, COLORS.get(name, "#000"))
        svg.line(W - R + 12, T + 16 + 20 * i, W - R + 32, T + 16 + 20 * i, COLORS.get(name, "#000"), 3)
        svg.text(W - R + 38, T + 20 + 20 * i, name, 12)
    svg.save(path)


def main():
    run, prefix = sys.argv[1], sys.argv[2]
    m16 = load_mvar(os.path.join(run, "mvar_t16.json"))
    tf, tb = load_pytorch(run, "fp32", 16), load_pytorch(run, "bf16", 16)
    sides = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]
    series = {
        "PyTorch fp32": tf["per_scale"],
        "PyTorch bf16": tb["per_scale"],
        "mvar fp32": [m16["mvar_d16/1"][f"s{s}_seconds"] for s in range(10)],
        "mvar bf16": [m16["mvar_d16_bf16/1"][f"s{s}_seconds"] for s in range(10)],
        "mvar int8": [m16["mvar_d16_int8/1"][f"s{s}_seconds"] for s in range(10)],
    }
    chart(prefix + "_per_scale.svg", "MVAR-d16 per scale, batch 1 + CFG, 16 threads (Xeon, AMX)",
          [f"{s}²" for s in sides], series, "seconds", log=True)
    threads = [2, 8, 16]
    ms = {t: load_mvar(os.path.join(run, f"mvar_t{t}.json")) for t in threads}
    tfs = {t: load_pytorch(run, "fp32", t) for t in threads}
    tbs = {t: load_pytorch(run, "bf16", t) for t in threads}
    sp = lambda vals: [vals[0] / v for v in vals]
    series = {
        "PyTorch fp32": sp([tfs[t]["seconds_per_image"] for t in threads]),
        "PyTorch bf16": sp([tbs[t]["seconds_per_image"] for t in threads]),
        "mvar fp32": sp([ms[t]["mvar_d16/1"]["total_seconds"] for t in threads]),
        "mvar bf16": sp([ms[t]["mvar_d16_bf16/1"]["total_seconds"] for t in threads]),
        "mvar int8": sp([ms[t]["mvar_d16_int8/1"]["total_seconds"] for t in threads]),
        "mvar decoder fp32": sp([ms[t]["decode_d16/0"]["decode_seconds"] for t in threads]),
    }
    chart(prefix + "_threads.svg", "Speed-up over 2 threads (MVAR-d16 batch 1; mvar: transformer, decoder)",
          threads, series, "× of 2 threads", xs=threads)


if __name__ == "__main__":
    main()
