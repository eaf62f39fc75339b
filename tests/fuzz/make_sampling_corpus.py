#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/corpus/sampling/ (input layout: see fuzz_sampling.cpp):
ordinary logits and the ones corrupt weights produce (NaN, ±Inf, all equal), with top_k/top_p/cfg
in and out of range. Deterministic; standard library only.

    python3 tests/fuzz/make_sampling_corpus.py tests/fuzz/corpus/sampling
"""
import math
import os
import struct
import sys


def main(out):
    os.makedirs(out, exist_ok=True)

    def w(name, k, p, cfg, draw, cond, uncond):
        with open(os.path.join(out, name), "wb") as f:
            f.write(struct.pack("<iffI", k, p, cfg, draw))
            f.write(struct.pack(f"<{len(cond)}f", *cond))
            f.write(struct.pack(f"<{len(uncond)}f", *uncond))

    ramp = [float(i % 17) - 8 for i in range(64)]
    w("plain_k900_p096", 900, 0.96, 1.5, 123456789, ramp, ramp[::-1])
    w("greedy_k1", 1, 1.0, 1.5, 7, ramp, ramp)
    w("k_negative", -5, 0.5, 4.0, 99, ramp, ramp)
    w("p_zero", 10, 0.0, 1.0, 1, ramp, ramp)
    w("p_above_one", 10, 1.5, 1.0, 2**32 - 1, ramp, ramp)
    w("nan_logits", 8, 0.9, 1.5, 5, [math.nan] * 16 + ramp[:48], ramp)
    w("all_nan", 8, 0.9, 1.5, 5, [math.nan] * 64, [math.nan] * 64)
    w("inf_logits", 4, 0.8, 1.5, 3, [math.inf, -math.inf] * 32, ramp)
    w("all_minus_inf", 4, 0.8, 1.0, 3, [-math.inf] * 64, [-math.inf] * 64)
    w("huge_cfg", 3, 0.5, 1e30, 11, ramp, ramp[::-1])
    w("nan_cfg_p", 3, math.nan, math.nan, 11, ramp, ramp)
    w("equal_logits", 2, 0.5, 1.5, 2**31, [1.0] * 64, [1.0] * 64)
    w("single_token", 1, 0.5, 1.5, 0, [0.0], [0.0])
    print(f"wrote 13 files to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "sampling"))
