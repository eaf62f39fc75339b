// evaluate_mpi — `evaluate` under MPI: one command across processes and machines.
//
//   mpirun -np 4 evaluate_mpi --per-class 50 --classes 0-999 --npz samples.npz [model options]
//
// Rank r of n draws shard r/n into samples.shard-0000r-of-0000n.npz with the cores its launcher
// gave it (else its host's cores / the ranks on that host). When every rank has succeeded, rank 0
// merges the shards into samples.npz (byte-identical to one process) and removes them
// (--keep-shards keeps them); otherwise nothing is merged, every finished or partial shard stays,
// and the same command continues them. Rank 0 must see every shard file (a shared file system)
// — docs/evaluation.md. The exit code (the worst of all ranks) is the same on every rank.
#include <mpi.h>

#include <cstdio>
#include <string>
#include <vector>

#include "evaluate.hpp"
#include "mvar/pipeline/evaluation.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  evaluation_cli::Context ctx;
  MPI_Comm_rank(MPI_COMM_WORLD, &ctx.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ctx.ranks);
  MPI_Comm local;  // the ranks sharing this host's cores
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, ctx.rank, MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &ctx.local_ranks);
  MPI_Comm_free(&local);
  ctx.prefix = mvar::concat("[evaluate rank ", ctx.rank, "/", ctx.ranks, "]");

  auto args = evaluation_cli::make_args();
  int rc = evaluation_cli::evaluate_main(argc, argv, ctx, args);
  if (ctx.ranks > 1 && !args.has("help")) {
    int worst = 0;  // every rank's shard must be complete before rank 0 merges
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (worst == 0 && ctx.rank == 0) {
      try {
        const std::string npz = args.str("npz");
        std::vector<std::string> inputs;
        for (int i = 0; i < ctx.ranks; ++i) inputs.push_back(mvar::shard_output_path(npz, mvar::Shard{i, ctx.ranks}));
        const bool wrote = mvar::merge_evaluation(inputs, npz);
        std::printf("%s %s %s from %d shards\n", ctx.prefix.c_str(), wrote ? "merged into" : "already complete:", npz.c_str(), ctx.ranks);
        if (!args.has("keep-shards"))
          for (const auto& f : inputs) std::remove(f.c_str());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s error: merge: %s (the shard files are kept)\n", ctx.prefix.c_str(), e.what());
        worst = 1;
      }
    } else if (worst != 0 && ctx.rank == 0) {
      std::fprintf(stderr, "%s not merged: a rank ended with exit code %d (finished shards and partial files are kept; run the same command again)\n",
                   ctx.prefix.c_str(), worst);
    }
    MPI_Bcast(&worst, 1, MPI_INT, 0, MPI_COMM_WORLD);
    rc = worst;
  }
  MPI_Finalize();
  return rc;
}
