// evaluate_run.cpp — the `evaluate` program's work, shared by `evaluate` (evaluate.cpp) and
// `evaluate_mpi` (evaluate_mpi.cpp): options, opening the model (evaluation_source.hpp), drawing a
// plan's shard or merging shard files. Compiled once for both programs.
#include <sched.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "default_model.hpp"
#include "evaluate.hpp"
#include "evaluation_source.hpp"


using namespace mvar;

namespace {

const char* kUsage =
    "usage: evaluate [options]\n"
    "Draws --per-class N images of each class in --classes A-B (or the labels of --labels FILE) into one .npz\n"
    "(arr_0 uint8 [N, H, W, 3], arr_1 int64 labels, settings.json). Image (class c, sample j) always uses RNG\n"
    "stream c*2^32 + j, so batch size, threads, shards and machines never change the bytes. An interrupted run\n"
    "continues when the same command is run again (OUT.partial + OUT.journal).";

}  // namespace

namespace evaluation_cli {

cli::Args make_args() {
  return cli::Args({
      {"help", "", "show this help and exit", ""},
      {"per-class", "N", "images per class", ""},
      {"classes", "A-B", "class range (inclusive) for --per-class", "every class of the model"},
      {"labels", "FILE", "instead of --per-class: one label per image (whitespace/comma separated, # comments)", ""},
      {"npz", "FILE", "output .npz (with --shard i/n: FILE's stem + .shard-0000i-of-0000n.npz)", ""},
      {"png-dir", "DIR", "also write one PNG per image there (INDEX_classC_SAMPLE.png)", ""},
      {"shard", "i/n", "draw only shard i of n (contiguous index range [i*N/n, (i+1)*N/n))", "0/1"},
      {"merge", "N", "merge the N shard files of --npz into --npz (byte-identical to one run)", ""},
      {"merge-files", "F1,F2,...", "merge these shard files into --npz", ""},
      {"batch", "N", "images per sampler call (throughput only; the bytes never change)", "16"},
      {"transformer", "FILE", "transformer weights (.safetensors or official .pth)", "the default model"},
      {"vae", "FILE", "VQVAE weights", "the default model's"},
      {"model", "NAME", "a preset name (see generate --help) or auto (config.json beside the weights, else the tensors' shapes)", "auto"},
      {"mode", "mvar|var", "trajectory", "from the checkpoint"},
      {"weights", "LAYOUT", "inplace, packed, bf16 or int8 (bf16/int8 change the pixels: recorded in the settings)", "packed"},
      {"isa", "LEVEL", "cap the kernels' code path: portable, avx2, avx512 or amx (recorded; shards of different paths do not merge)", "the best this CPU has"},
      {"cfg", "X", "classifier-free guidance strength", "model's recommendation"},
      {"top-k", "N", "top-k (0 = off)", "model's recommendation"},
      {"top-p", "X", "top-p in (0, 1]", "model's recommendation"},
      {"seed", "N", "random seed", "0"},
      {"threads", "N", "worker threads", "the cores this process may use if a launcher restricted them, else the host's cores / its MPI ranks"},
      {"keep-shards", "", "MPI: keep the per-rank shard files after the merge", ""},
      {"stop-after", "N", "testing: stop (resumably, exit 3) once N or more images of this run are done", ""},
      {"quiet", "", "no progress lines", ""},
  });
}

namespace {

std::string duration(double s) {
  if (!(s < 1e9)) return "?";
  const long t = long(s + 0.5);
  char buf[48];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  return buf;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::size_t p = 0;
  while (p <= s.size()) {
    const auto c = s.find(',', p);
    const std::string part = s.substr(p, c == std::string::npos ? std::string::npos : c - p);
    if (!part.empty()) out.push_back(part);
    if (c == std::string::npos) break;
    p = c + 1;
  }
  return out;
}

}  // namespace

// Default threads: the cores this process may run on when a launcher restricted them (mpirun
// --map-by …:PE=k, taskset, a batch system's cgroup cpuset), else the host's cores divided among
// the ranks on this host.
int default_threads(int local_ranks) {
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const int allowed = CPU_COUNT(&set);
    if (allowed >= 1 && allowed < hw) return allowed;
  }
  return std::max(1, hw / std::max(1, local_ranks));
}

int run(const cli::Args& args, const Context& ctx) {
  const bool quiet = args.has("quiet");
  const std::string npz = args.str("npz");
  if (npz.empty()) throw cli::UsageError("--npz FILE is required");

  // Merge only (no model needed).
  if (args.has("merge") || args.has("merge-files")) {
    if (args.has("merge") && args.has("merge-files")) throw cli::UsageError("give --merge N or --merge-files, not both");
    if (ctx.ranks > 1) throw cli::UsageError("--merge runs in one process (the MPI program merges by itself)");
    std::vector<std::string> inputs;
    if (args.has("merge")) {
      const int n = args.integer<int>("merge", 0);
      if (n < 1 || n > 1'000'000) throw cli::UsageError(concat("--merge must be in [1, 1000000], got ", n));
      for (int i = 0; i < n; ++i) inputs.push_back(shard_output_path(npz, Shard{i, n}));
    } else {
      inputs = split_commas(args.str("merge-files"));
    }
    const bool wrote = merge_evaluation(inputs, npz);
    std::printf("%s %s %s from %zu shard file(s)\n", ctx.prefix.c_str(), wrote ? "merged into" : "already complete:", npz.c_str(),
                inputs.size());
    return 0;
  }

  if (args.has("labels") == args.has("per-class"))
    throw cli::UsageError("give either --per-class N (with --classes A-B) or --labels FILE");
  if (args.has("classes") && !args.has("per-class")) throw cli::UsageError("--classes goes with --per-class");

  Shard shard;
  if (args.has("shard")) {
    if (ctx.ranks > 1) throw cli::UsageError("--shard is set by MPI (rank/size); leave it out under mpirun");
    try {
      shard = parse_shard(args.str("shard"));
    } catch (const Error& e) {
      throw cli::UsageError(e.what());
    }
  }
  if (ctx.ranks > 1) shard = Shard{ctx.rank, ctx.ranks};

  evaluation_cli::ModelRequest mr;
  mr.transformer = args.str("transformer");
  mr.vae = args.str("vae");
  if (mr.transformer.empty() && mr.vae.empty()) mr.default_model_dir = examples::default_model_dir().string();
  mr.model = args.str("model", "auto");
  if (args.has("mode")) mr.mode = args.choice("mode", "mvar", {"mvar", "var"}) == "var" ? Mode::Var : Mode::Mvar;
  mr.weights = args.choice("weights", "packed", {"inplace", "packed", "bf16", "int8"});
  if (args.has("isa")) {
    const auto isa = parse_isa(args.str("isa"));
    if (!isa) throw cli::UsageError(concat("--isa must be 'portable', 'avx2', 'avx512' or 'amx', got '", args.str("isa"), "'"));
    set_isa_limit(*isa);
  }
  if (args.has("cfg")) mr.cfg = float(args.number("cfg", 0));
  if (args.has("top-k")) mr.top_k = args.integer<int>("top-k", 0);
  if (args.has("top-p")) mr.top_p = float(args.number("top-p", 0));
  mr.seed = args.integer<std::uint64_t>("seed", 0);
  mr.threads = args.integer<int>("threads", default_threads(ctx.local_ranks));
  if (mr.threads < 1 || mr.threads > 1024) throw cli::UsageError(concat("--threads must be in [1, 1024], got ", mr.threads));
  const int batch = args.integer<int>("batch", 16);
  if (batch < 1 || batch > 4096) throw cli::UsageError(concat("--batch must be in [1, 4096], got ", batch));
  mr.max_batch = batch;

  const auto t_load = std::chrono::steady_clock::now();
  const evaluation_cli::OpenedSource src = evaluation_cli::open_image_source(mr);

  EvaluationPlan plan = [&] {
    try {
      if (args.has("labels")) return EvaluationPlan::from_label_file(args.str("labels"));
      const std::uint64_t per = args.integer<std::uint64_t>("per-class", 0);
      const auto [a, b] = args.has("classes") ? EvaluationPlan::parse_classes(args.str("classes")) : std::pair{0, src.num_classes - 1};
      return EvaluationPlan::per_class(per, a, b);
    } catch (const cli::UsageError&) {
      throw;
    } catch (const Error& e) {
      if (args.has("labels")) throw;  // a file problem
      throw cli::UsageError(e.what());
    }
  }();
  try {
    plan.check_classes(src.num_classes);
  } catch (const Error& e) {
    throw cli::UsageError(e.what());
  }

  EvaluationOptions o;
  o.npz = shard.count > 1 ? shard_output_path(npz, shard) : npz;
  o.png_dir = args.str("png-dir");
  o.batch = batch;
  o.shard = shard;
  const std::uint64_t stop_after = args.integer<std::uint64_t>("stop-after", 0);
  const IndexRange range = plan.shard(shard);
  if (!quiet)
    std::printf("%s %s; images [%llu, %llu) of %llu (shard %d/%d) → %s; batch %d, %d thread(s); loaded in %.2f s\n", ctx.prefix.c_str(),
                src.description.c_str(), static_cast<unsigned long long>(range.begin), static_cast<unsigned long long>(range.end),
                static_cast<unsigned long long>(plan.size()), shard.index, shard.count, o.npz.c_str(), batch, mr.threads,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());
  o.on_progress = [&](const EvaluationProgress& p) {
    if (!quiet) {
      std::printf("%s %llu/%llu images (%.1f %%)%s, %.2f images/s, ETA %s\n", ctx.prefix.c_str(),
                  static_cast<unsigned long long>(p.done), static_cast<unsigned long long>(p.total),
                  100.0 * double(p.done) / double(std::max<std::uint64_t>(p.total, 1)),
                  p.resumed_from ? concat(" (", p.resumed_from, " resumed)").c_str() : "", p.images_per_second,
                  duration(p.eta_seconds).c_str());
      std::fflush(stdout);
    }
    return stop_after == 0 || p.done - p.resumed_from < stop_after;
  };
  const EvaluationResult r = run_evaluation(plan, src.identity, src.side, src.source, o);
  if (r.status == EvaluationStatus::Stopped) {
    std::printf("%s stopped after %llu of %llu images (--stop-after); run the same command again to continue\n", ctx.prefix.c_str(),
                static_cast<unsigned long long>(r.done), static_cast<unsigned long long>(r.range.size()));
    return 3;
  }
  std::printf("%s %s %s (%llu images of %d×%d%s)\n", ctx.prefix.c_str(),
              r.status == EvaluationStatus::AlreadyComplete ? "already complete:" : "wrote", r.output.c_str(),
              static_cast<unsigned long long>(r.range.size()), src.side, src.side,
              r.resumed_from && r.status == EvaluationStatus::Complete ? concat(", ", r.resumed_from, " resumed").c_str() : "");
  return 0;
}

int evaluate_main(int argc, char** argv, const Context& ctx, cli::Args& args) {
  try {
    args.parse(argc, argv);
    if (args.has("help")) {
      if (ctx.rank == 0) std::printf("%s", args.help(kUsage).c_str());
      return 0;
    }
    return run(args, ctx);
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "%s %s (see --help)\n", ctx.prefix.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s error: %s\n", ctx.prefix.c_str(), e.what());
    return 1;
  }
}

}  // namespace evaluation_cli
