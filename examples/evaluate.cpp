// evaluate — class-conditional samples at evaluation scale into one .npz (uint8 arr_0 [N, H, W, 3],
// int64 labels arr_1, settings.json), as FID/IS evaluation suites read it. Sharded, resumable,
// merged byte for byte (mvar/pipeline/evaluation.hpp, docs/evaluation.md).
//
//   evaluate --per-class 100 --classes 0-9 --npz samples.npz                 # one process
//   evaluate --per-class 100 --classes 0-9 --npz samples.npz --shard 1/4     # → samples.shard-00001-of-00004.npz
//   evaluate --merge 4 --npz samples.npz                                     # the 4 shards → samples.npz
//
// Exit codes: 0 done, 1 runtime error, 2 bad command line, 3 stopped by --stop-after (resumable).
#include "evaluate.hpp"

int main(int argc, char** argv) {
  const evaluation_cli::Context ctx;
  auto args = evaluation_cli::make_args();
  return evaluation_cli::evaluate_main(argc, argv, ctx, args);
}
