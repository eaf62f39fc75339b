// tests/trace_check.hpp — the teacher-forced trace check shared by test_model (the tiny VAR and
// MVAR fixtures) and test_zoo (shared AdaLN on the 512-px schedule).
//
// Runs the whole pyramid teacher-forced on the trace's own inputs x_in.s{s} and compares the inputs
// we build (our embedding of next_in.s{s−1}), every block output h.s{s}.b{i}, every row's
// log-sum-exp and the stored logit rows (logits_cond / logits_uncond at logit_tok) with `tol`. The
// trace's batch, labels and CFG rows (2B, or B for MVAR at cfg = 1) are given by the caller, read
// from the fixture's config.json. Comparisons are NaN-aware (model_test_util.hpp).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "model_test_util.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/model/transformer.hpp"

namespace mvar::test {

/// What a reduced-precision run records beyond the tolerance checks: the worst logit error and,
/// for every stored logit row whose top-2 margin in the official logits exceeds 2·tol (so that no
/// error within tol can swap them), whether our argmax is the official one.
struct TraceStats {
  double worst_logit = 0;
  int greedy_rows = 0, greedy_same = 0;
};

/// labels: the B class labels of the trace; cfg_doubled: whether the trace ran 2B rows (the null
/// class appended) — VAR always, MVAR unless cfg = 1.
template <class Trajectory, class Model>
void check_teacher_forced(const Model& model, const TensorStore& tr, std::vector<int> labels, bool cfg_doubled,
                          double tol, TraceStats* stats = nullptr) {
  constexpr auto& cfg = Model::config;
  constexpr std::ptrdiff_t C = Model::C, V = Model::V;
  const int B = int(labels.size()), R = cfg_doubled ? 2 * B : B, E = cfg.cvae;
  if (cfg_doubled)
    for (int b = 0; b < B; ++b) labels.push_back(cfg.num_classes);
  Trajectory traj(cfg);
  ThreadPool pool(2);
  const auto& pn = cfg.patch_nums;
  Workspace ws(Model::conditioning_bytes(R) + Model::workspace_bytes(std::ptrdiff_t(R) * pn.max_tokens()) +
               Workspace::round(4ul * R * pn.max_tokens() * (C + V)) + 4096);
  auto cond = model.condition(pool, labels, ws);
  traj.reserve(R);
  for (int s = 0; s < pn.size(); ++s) {
    CAPTURE(s);
    const int n = pn.tokens(s);
    const auto want_x = tr.at(concat("x_in.s", s)).to_float();
    REQUIRE(want_x.size() == std::size_t(R) * n * C);
    const auto mark = ws.mark();
    TensorView<float, 2> x(ws.take<float>(std::size_t(R) * n * C), {R * n, C});
    TensorView<float, 2> logits(ws.take<float>(std::size_t(R) * n * V), {R * n, V});
    // Our own embedding of this step's input.
    if (s == 0) {
      model.embed_first(cond, R, x);
    } else {
      const auto z_chw = tr.at(concat("next_in.s", s - 1)).to_float();  // (B, cvae, pn, pn)
      std::vector<float> z(std::size_t(n) * E);
      for (int b = 0; b < B; ++b) {
        for (int t = 0; t < n; ++t)
          for (int c = 0; c < E; ++c) z[std::size_t(t) * E + c] = z_chw[(std::size_t(b) * E + c) * n + t];
        model.embed_scale(pool, s, TensorView<const float, 2>(z.data(), {n, E}), x.slice(0, b * n, (b + 1) * n));
        if (cfg_doubled) std::memcpy(x.row((B + b) * n), x.row(b * n), sizeof(float) * std::size_t(n) * C);
      }
    }
    CHECK(max_abs_diff(x.data(), want_x.data(), want_x.size()) <= tol);
    std::memcpy(x.data(), want_x.data(), want_x.size() * sizeof(float));  // teacher-force the input

    int blocks_seen = 0;
    ForwardHooks hooks;
    hooks.after_block = [&](int scale, int block, TensorView<const float, 2> h) {
      const auto want = tr.at(concat("h.s", scale, ".b", block)).to_float();
      CAPTURE(block);
      CHECK(max_abs_diff(h.data(), want.data(), want.size()) <= tol);
      ++blocks_seen;
    };
    model.forward(pool, s, cond, R, x, [&](const AttentionCall& c) { traj.attend(pool, c); }, logits, ws, &hooks);
    REQUIRE(blocks_seen == cfg.depth);

    const auto lse = tr.at(concat("lse_raw.s", s)).to_float();  // (R, n)
    double worst = 0;
    for (int r = 0; r < R * n; ++r) worst = nan_max(worst, std::fabs(logsumexp(logits.row(r), V) - lse[std::size_t(r)]));
    CHECK(worst <= tol);
    const auto tok = tr.at(concat("logit_tok.s", s)).to_int();
    const auto lc = tr.at(concat("logits_cond.s", s)).to_float();  // (B, T, V)
    REQUIRE(lc.size() == std::size_t(B) * tok.size() * V);
    REQUIRE((tr.find(concat("logits_uncond.s", s)) != nullptr) == cfg_doubled);
    const auto lu = cfg_doubled ? tr.at(concat("logits_uncond.s", s)).to_float() : std::vector<float>{};
    for (int b = 0; b < B; ++b)
      for (std::size_t i = 0; i < tok.size(); ++i) {
        const std::size_t at = (std::size_t(b) * tok.size() + i) * V;
        std::vector<std::pair<const float*, const float*>> rows{{logits.row(b * n + tok[i]), lc.data() + at}};
        if (cfg_doubled) rows.emplace_back(logits.row((B + b) * n + tok[i]), lu.data() + at);
        for (const auto& [ours, want] : rows) {
          CHECK(max_abs_diff(ours, want, V) <= tol);
          if (!stats) continue;
          stats->worst_logit = nan_max(stats->worst_logit, max_abs_diff(ours, want, V));
          const int best = int(std::max_element(want, want + V) - want);
          float second = -std::numeric_limits<float>::infinity();
          for (int v = 0; v < V; ++v)
            if (v != best) second = std::max(second, want[v]);
          if (!(want[best] - second > 2 * tol)) continue;
          ++stats->greedy_rows;
          stats->greedy_same += int(std::max_element(ours, ours + V) - ours) == best;
        }
      }
    ws.release(mark);
  }
}

}  // namespace mvar::test
