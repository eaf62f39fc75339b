#!/usr/bin/env python3
"""PyTorch baseline vs the C++ benchmark: per-scale and total times, with ratios.

Runs bench/torch_reference.py --time in separate processes (one per configuration, model and
batch; peak RSS is therefore per run) and, if it exists, the C++ Google-Benchmark executable
(default build/bench/bench_generate, --benchmark_format=json, counters s0_seconds .. s9_seconds,
decode_seconds, total_seconds). Prints one table per (model, batch).

PyTorch configurations (all with torch.set_num_threads(2)):
  stock     Debian python3-torch as installed: libblas.so.3 resolves to the reference (netlib)
            BLAS of the Debian alternatives system, so every nn.Linear runs at ~5 GFLOP/s.
            Reported for information only; not a fair baseline.
  untuned   OpenBLAS 0.3.21 (Debian libopenblas0-pthread) put in front via LD_LIBRARY_PATH,
            nothing else: the plain "pip-like" PyTorch+BLAS user setup.
  tuned     untuned + OMP_WAIT_POLICY=PASSIVE, jemalloc (LD_PRELOAD) with
            MALLOC_CONF=thp:always,metadata_thp:always, OPENBLAS_CORETYPE=SkylakeX
  tuned_bf16  tuned + torch.autocast('cpu', bfloat16) around the transformer (not the decoder)

Examples
  python3 bench/compare_torch.py                              # mvar+var, batch 1, untuned+tuned
  python3 bench/compare_torch.py --batches 1 4 --configs untuned tuned tuned_bf16
  python3 bench/compare_torch.py --from-jsonl results.jsonl    # re-print saved results
OpenBLAS: --openblas-dir, else the first of /usr/lib/x86_64-linux-gnu/openblas-pthread,
/opt/torchref-deps/root/usr/lib/x86_64-linux-gnu/openblas-pthread that exists (extract the deb
without changing the system alternative: apt-get download libopenblas0-pthread; dpkg -x *.deb root).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
S = 10
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
OPENBLAS_CANDIDATES = ["/usr/lib/x86_64-linux-gnu/openblas-pthread",
                       "/opt/torchref-deps/root/usr/lib/x86_64-linux-gnu/openblas-pthread"]
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def find_openblas(explicit):
    for d in ([explicit] if explicit else []) + OPENBLAS_CANDIDATES:
        if d and os.path.exists(os.path.join(d, "libblas.so.3")):
            return d
    return None


def config_env(name, openblas):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "LD_PRELOAD", "MALLOC_CONF", "OPENBLAS_CORETYPE",
                        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    extra = []
    if name != "stock":
        if openblas is None:
            print(f"warning: no OpenBLAS found; '{name}' runs on the stock (reference) BLAS",
                  file=sys.stderr)
        else:
            env["LD_LIBRARY_PATH"] = openblas + (":" + env["LD_LIBRARY_PATH"]
                                                 if env.get("LD_LIBRARY_PATH") else "")
    if name.startswith("tuned"):
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        if os.path.exists(JEMALLOC):
            env["LD_PRELOAD"] = JEMALLOC
            env["MALLOC_CONF"] = "thp:always,metadata_thp:always"
        else:
            print("warning: libjemalloc2 not installed; tuned runs use glibc malloc",
                  file=sys.stderr)
        env["OPENBLAS_CORETYPE"] = "SkylakeX"
    if name.endswith("bf16"):
        extra.append("--bf16")
    return env, extra


def run_torch(cfgname, model, batch, args, openblas):
    env, extra = config_env(cfgname, openblas)
    cmd = [PYTHON, os.path.join(HERE, "torch_reference.py"), "--time", "--model", model,
           "--batch", str(batch), "--reps", str(args.reps), "--warmup", str(args.warmup),
           "--preset", args.preset, "--label", cfgname] + extra
    print("+ " + " ".join(f"{k}={env[k]}" for k in ("LD_LIBRARY_PATH", "LD_PRELOAD",
                                                   "OMP_WAIT_POLICY", "OPENBLAS_CORETYPE")
                          if k in env) + " " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    recs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return [r for r in recs if r["kind"] == "summary"][0]


def run_cxx(path, extra):
    cmd = [path, "--benchmark_format=json"] + extra
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    return parse_cxx(json.loads(out))


def parse_cxx(doc):
    """Google Benchmark JSON -> {(model, batch): {counter: seconds}} (median over entries)."""
    groups = {}
    for b in doc.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name", b.get("name", "")).lower()
        model = "mvar" if "mvar" in name else ("var" if "var" in name else None)
        if model is None:
            continue
        batch = int(b["batch"]) if "batch" in b else None
        if batch is None:
            m = re.findall(r"(?:batch[:=_]?|/)(\d+)", name)
            batch = int(m[-1]) if m else 1
        counters = {k: float(v) for k, v in b.items()
                    if isinstance(v, (int, float)) and k.endswith("_seconds")}
        if not counters:
            continue
        key = (model, batch)
        if b.get("run_type") == "aggregate":
            groups[key] = [counters]        # a median aggregate wins over single repetitions
            groups[key + ("agg",)] = True
        elif (key + ("agg",)) not in groups:
            groups.setdefault(key, []).append(counters)
    res = {}
    for key, lst in groups.items():
        if len(key) != 2:
            continue
        res[key] = {k: statistics.median(d[k] for d in lst if k in d) for k in lst[0]}
    return res


def fmt(x):
    return "      -" if x is None else (f"{x:7.3f}" if x < 100 else f"{x:7.1f}")


def print_table(model, batch, torch_res, cxx):
    cfgs = [c for c in torch_res]
    cols = [f"torch {c}" for c in cfgs] + (["C++"] if cxx else [])
    ratio_cols = [f"{c}/C++" for c in cfgs] if cxx else []
    print(f"\n{model.upper()}-{torch_res[cfgs[0]]['preset']}  batch {batch}  "
          f"(seconds per generation of {batch} image(s); cfg 1.5, top_k 900, top_p 0.96)")
    print(f"{'part':>18s} " + " ".join(f"{c:>16s}" for c in cols + ratio_cols))
    rows = [(f"s{s} (pn {p})", f"s{s}_seconds") for s, p in
            enumerate((1, 2, 3, 4, 5, 6, 8, 10, 13, 16))]
    rows += [("all scales", "transformer_seconds"), ("decode", "decode_seconds"),
             ("total", "total_seconds")]
    for title, key in rows:
        vals = [torch_res[c]["median"].get(key) for c in cfgs]
        cv = None
        if cxx:
            cv = cxx.get(key)
            if cv is None and key == "transformer_seconds":
                parts = [cxx.get(f"s{s}_seconds") for s in range(S)]
                cv = sum(parts) if all(p is not None for p in parts) else None
        line = f"{title:>18s} " + " ".join(f"{fmt(v):>16s}" for v in vals)
        if cxx:
            line += f" {fmt(cv):>16s}"
            line += " " + " ".join(f"{(fmt(v / cv) if (v and cv) else fmt(None)):>16s}"
                                   for v in vals)
        print(line)
    spi = [torch_res[c]["seconds_per_image"] for c in cfgs]
    line = f"{'s / image':>18s} " + " ".join(f"{fmt(v):>16s}" for v in spi)
    if cxx and cxx.get("total_seconds"):
        c = cxx["total_seconds"] / batch
        line += f" {fmt(c):>16s} " + " ".join(f"{fmt(v / c):>16s}" for v in spi)
    print(line)
    print(f"{'CPU s (2 threads)':>18s} " + " ".join(
        f"{fmt(torch_res[c]['median'].get('total_cpu_seconds')):>16s}" for c in cfgs))
    print(f"{'peak RSS (MB)':>18s} " + " ".join(f"{torch_res[c]['peak_rss_mb']:16.0f}"
                                                  for c in cfgs))
    print(f"{'load avg (1 min)':>18s} " + " ".join(f"{torch_res[c]['loadavg'][0]:16.2f}"
                                                     for c in cfgs))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mvar", "var"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1])
    ap.add_argument("--configs", nargs="+", default=["untuned", "tuned"],
                    choices=["stock", "untuned", "tuned", "tuned_bf16"])
    ap.add_argument("--preset", default="d16")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--openblas-dir")
    ap.add_argument("--cxx", default=os.path.join(ROOT, "build", "bench", "bench_generate"))
    ap.add_argument("--cxx-json", help="read C++ Google Benchmark JSON from this file instead")
    ap.add_argument("--cxx-args", nargs=argparse.REMAINDER, default=[],
                    help="extra arguments for the C++ executable (put last)")
    ap.add_argument("--from-jsonl", help="do not run torch; read summaries saved by --save")
    ap.add_argument("--save", help="append torch summary JSON lines to this file")
    args = ap.parse_args()

    openblas = find_openblas(args.openblas_dir)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; OpenBLAS: {openblas or 'not found'}", flush=True)

    summaries = []
    if args.from_jsonl:
        with open(args.from_jsonl) as f:
            summaries = [json.loads(l) for l in f if l.strip().startswith("{")]
        summaries = [s for s in summaries if s.get("kind") == "summary"]
    else:
        for model in args.models:
            for batch in args.batches:
                for c in args.configs:
                    sm = run_torch(c, model, batch, args, openblas)
                    summaries.append(sm)
                    if args.save:
                        with open(args.save, "a") as f:
                            f.write(json.dumps(sm) + "\n")

    cxx = {}
    if args.cxx_json:
        with open(args.cxx_json) as f:
            cxx = parse_cxx(json.load(f))
    elif os.path.exists(args.cxx):
        try:
            cxx = run_cxx(args.cxx, args.cxx_args)
        except Exception as e:  # keep the PyTorch table even if the C++ side fails
            print(f"C++ benchmark failed: {e}", file=sys.stderr)
    if not cxx:
        print(f"note: no C++ results ({args.cxx} not found or produced no matching counters);"
              " printing the PyTorch side alone.")

    by_key = {}
    for sm in summaries:
        by_key.setdefault((sm["model"], sm["batch"]), {})[sm["label"]] = sm
    for (model, batch), res in sorted(by_key.items(), key=lambda kv: (kv[0][0] != "mvar", kv[0][1])):
        print_table(model, batch, res, cxx.get((model, batch)))


if __name__ == "__main__":
    main()
