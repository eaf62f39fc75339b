// examples/evaluate.hpp — what evaluate.cpp and evaluate_mpi.cpp share (evaluate_run.cpp).
#pragma once

#include <string>

#include "cli_args.hpp"

namespace evaluation_cli {

/// Where this process stands: one process, or rank `rank` of `ranks` (`local_ranks` on its host).
struct Context {
  int rank = 0, ranks = 1, local_ranks = 1;
  std::string prefix = "[evaluate]";
};

/// The options of both programs.
::cli::Args make_args();

/// Default worker threads: the cores this process may run on when a launcher restricted them,
/// else the host's cores divided among its ranks.
int default_threads(int local_ranks);

/// Parses the command line into `args` and does this process's part: draw its shard (rank/ranks
/// under MPI, else --shard) or merge. Prints errors; returns the exit code (0 done, 1 runtime
/// error, 2 bad command line, 3 stopped by --stop-after).
int evaluate_main(int argc, char** argv, const Context& ctx, ::cli::Args& args);

}  // namespace evaluation_cli
