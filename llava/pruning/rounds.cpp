// VisPruner's diverse rounds (llava/pruning/diversity.py) as one loop per image on the CPU: the same
// positions as the plain-torch rounds, without an operator dispatch for each step of each round.
// Built on first use by llava/pruning/fused_rounds.py (torch.utils.cpp_extension).
//
// Each round: every even-position token's best match is the maximum of its similarity row over the
// odd-position tokens (NaN propagates, as in torch.amax); the `drop` evens with the highest best
// match go; the pool becomes the surviving evens by descending best match (NaN first, ties to the
// earlier position: torch's stable descending sort) followed by the odd tokens, until `keep` remain.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace {

template <typename scalar_t>
constexpr scalar_t kLowest = -std::numeric_limits<scalar_t>::infinity();

// max_j (row[j] + bias[j]) with bias 0 on the odd tokens and -inf elsewhere, in vector registers
// (GCC/Clang vector extensions: AVX2 where the CPU has it). `unsure` is set when a lane met a NaN
// (a NaN entry, or +inf plus -inf): the caller then recomputes the row exactly.
template <typename scalar_t>
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
scalar_t masked_row_max(const scalar_t* row, const scalar_t* bias, int64_t width, bool* unsure) {
  constexpr int lanes = 32 / sizeof(scalar_t);
  typedef scalar_t vec __attribute__((vector_size(32)));
  vec best = {}, nan = {};
  for (int k = 0; k < lanes; ++k) best[k] = kLowest<scalar_t>;
  int64_t j = 0;
  for (; j + lanes <= width; j += lanes) {
    vec value, shift;
    std::memcpy(&value, row + j, sizeof(vec));
    std::memcpy(&shift, bias + j, sizeof(vec));
    value += shift;
    nan = value != value ? value : nan;  // keeps a NaN lane once one is seen
    best = value > best ? value : best;
  }
  scalar_t result = kLowest<scalar_t>;
  bool seen_nan = false;
  for (int k = 0; k < lanes; ++k) {
    seen_nan |= nan[k] != nan[k];
    result = best[k] > result ? best[k] : result;
  }
  for (; j < width; ++j) {
    const scalar_t value = row[j] + bias[j];
    seen_nan |= value != value;
    result = value > result ? value : result;
  }
  *unsure = seen_nan;
  return result;
}

// The exact row maximum over `odd` as torch.amax computes it (NaN propagates).
template <typename scalar_t>
scalar_t exact_row_max(const scalar_t* row, const std::vector<int64_t>& odd) {
  scalar_t result = kLowest<scalar_t>;
  for (int64_t token : odd) {
    const scalar_t value = row[token];
    if (std::isnan(value)) return value;
    result = value > result ? value : result;
  }
  return result;
}

template <typename scalar_t>
bool ranks_before(scalar_t a, int64_t a_position, scalar_t b, int64_t b_position) {
  const bool a_nan = std::isnan(a), b_nan = std::isnan(b);
  if (a_nan != b_nan) return a_nan;
  if (!a_nan && a != b) return a > b;
  return a_position < b_position;
}

// One image's [R, R] similarity; `kept` receives the `keep` surviving positions in their final order.
// Once the pool is down to half the matrix's width, the matrix is rebuilt on the surviving tokens
// (renumbered by their current order), so later rounds read no dropped token's entries.
template <typename scalar_t>
void rounds_of_one(const scalar_t* similarity, int64_t pool, int64_t keep, int64_t round_size, int64_t* kept) {
  std::vector<int64_t> order(pool), name(pool), even, odd, rank;
  std::iota(order.begin(), order.end(), 0);
  std::iota(name.begin(), name.end(), 0);  // matrix index -> pool position
  std::vector<scalar_t> compact, bias(pool, kLowest<scalar_t>), best;
  const scalar_t* matrix = similarity;
  int64_t width = pool, remaining = pool;
  for (int64_t drop; (drop = std::min(round_size, remaining - keep)) > 0; remaining -= drop) {
    drop = std::min(drop, (remaining + 1) / 2);  // never more than stand on the even side
    if (2 * remaining <= width) {
      std::vector<scalar_t> rebuilt(remaining * remaining);
      std::vector<int64_t> renamed(remaining);
      for (int64_t i = 0; i < remaining; ++i) {
        const scalar_t* row = matrix + order[i] * width;
        for (int64_t k = 0; k < remaining; ++k) rebuilt[i * remaining + k] = row[order[k]];
        renamed[i] = name[order[i]];
      }
      std::iota(order.begin(), order.begin() + remaining, 0);
      compact.swap(rebuilt);
      name.swap(renamed);
      matrix = compact.data();
      width = remaining;
    }
    even.clear();
    odd.clear();
    for (int64_t i = 0; i < remaining; ++i) (i % 2 ? odd : even).push_back(order[i]);
    for (int64_t token : odd) bias[token] = 0;
    best.resize(even.size());
    for (size_t e = 0; e < even.size(); ++e) {
      const scalar_t* row = matrix + even[e] * width;
      bool unsure = false;
      best[e] = masked_row_max(row, bias.data(), width, &unsure);
      if (unsure) best[e] = exact_row_max(row, odd);
    }
    for (int64_t token : odd) bias[token] = kLowest<scalar_t>;
    rank.resize(even.size());
    std::iota(rank.begin(), rank.end(), 0);
    std::sort(rank.begin(), rank.end(), [&](int64_t a, int64_t b) { return ranks_before(best[a], a, best[b], b); });
    int64_t next = 0;
    for (size_t r = drop; r < rank.size(); ++r) order[next++] = even[rank[r]];
    for (int64_t token : odd) order[next++] = token;
  }
  for (int64_t i = 0; i < keep; ++i) kept[i] = name[order[i]];
}

at::Tensor diverse_rounds(const at::Tensor& similarity, int64_t keep, int64_t round_size) {
  TORCH_CHECK(similarity.device().is_cpu(), "diverse_rounds: the similarity must be on the CPU");
  TORCH_CHECK(similarity.dim() == 3 && similarity.size(1) == similarity.size(2),
              "diverse_rounds: the similarity must be [B, R, R], got ", similarity.sizes());
  TORCH_CHECK(similarity.scalar_type() == at::kFloat || similarity.scalar_type() == at::kDouble,
              "diverse_rounds: the similarity must be float32 or float64, got ", similarity.scalar_type());
  const int64_t batch = similarity.size(0), pool = similarity.size(1);
  TORCH_CHECK(keep >= 1 && keep <= pool, "diverse_rounds: keep must be in 1..", pool, ", got ", keep);
  TORCH_CHECK(round_size >= 1, "diverse_rounds: round_size must be >= 1, got ", round_size);
  const at::Tensor rows = similarity.contiguous();
  at::Tensor kept = at::empty({batch, keep}, similarity.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "diverse_rounds", [&] {
    const scalar_t* data = rows.data_ptr<scalar_t>();
    int64_t* out = kept.data_ptr<int64_t>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) rounds_of_one(data + b * pool * pool, pool, keep, round_size, out + b * keep);
    });
  });
  return kept;
}

}  // namespace

TORCH_LIBRARY(vispruner, m) { m.def("diverse_rounds(Tensor similarity, int keep, int round_size) -> Tensor"); }

TORCH_LIBRARY_IMPL(vispruner, CPU, m) { m.impl("diverse_rounds", &diverse_rounds); }
