// CPU kernels of the Jensen-Shannon family: js_divergence (vectorised over runs of entries), js_pairwise
// (tiled, vectorised over the columns of a tile), js_stability (window means, then js_divergence's entry
// terms), and their backwards (row by row, with the shared maths of jsd_common.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/vec_math.h"
#include "cpu/vectorize.h"
#include "jsd_common.h"

namespace mednns_fast {
namespace {

using jsd::Row;

// Rows handed to one task: enough entries (32k) that waking a thread costs nothing next to the work.
int64_t row_grain(int64_t K) { return std::max<int64_t>(1, 32768 / K); }

// ---- js_divergence ------------------------------------------------------------------------------
//
// Entries are processed in vectorised runs: t = s h(d) / 4 (jsd_common.h) with both branches of h
// computed branch-free and one selected: the series sum_m d^2m / (m (2m - 1)) for |d| < 1/4 (12 terms:
// the first dropped one is below 2e-17 relative there), else (1 + d) log1p(d) + (1 - d) log1p(-d)
// through vec::log, which cancels by at most a factor 4.5 at |d| = 1/4. Rows are then summed, clamped.

// log1p(d) = log(u) + (d - (u - 1)) / u to first order, u = fl(1 + d): the second term puts back what
// rounding 1 + d lost (u - 1 is exact). Finite everywhere (d = -1: 0 / tiny), so it can be computed for
// every entry and selected afterwards.
template <typename T>
inline __attribute__((always_inline)) T log1p_vec(T d) {
  const T u = T(1) + d;
  return vec::log(u) + (d - (u - T(1))) / (u + std::numeric_limits<T>::min());
}

constexpr int kSeriesTerms = 12;

template <typename T>
MEDNNS_FAST_MULTIVERSION void entry_terms(const T* __restrict p, const T* __restrict q, T* __restrict out,
                                          int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T s = p[i] + q[i];
    const T d = (p[i] - q[i]) / (s + std::numeric_limits<T>::min());  // s == 0: d = 0, term 0
    const T x = d * d;
    T series = T(0);
    for (int m = kSeriesTerms; m >= 1; --m) series = T(1) / T(m * (2 * m - 1)) + x * series;
    series *= x;
    // 0 log 0 = 0: at d = -1 the first product is 0 * finite (vec::log is guarded), likewise at d = 1.
    const T logs = (T(1) + d) * log1p_vec(d) + (T(1) - d) * log1p_vec(-d);
    out[i] = s * vec::select_below(x, T(0.0625), series, logs) * T(0.25);
  }
}

// exp of n entries, all <= 0 (shifted logits), in place.
template <typename T>
MEDNNS_FAST_MULTIVERSION void exp_nonpositive_inplace(T* __restrict x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = vec::exp_nonpositive(x[i]);
}

// Softmax of `rows` rows of K logits into out (acc_t), the exps vectorised across rows. A -inf logit
// gives exactly 0 (the checks guarantee each row a finite maximum).
template <typename scalar_t, typename acc_t>
void softmax_rows(const scalar_t* x, acc_t* out, int64_t rows, int64_t K) {
  for (int64_t r = 0; r < rows; ++r) {
    acc_t max = -std::numeric_limits<acc_t>::infinity();
    for (int64_t k = 0; k < K; ++k) max = std::max(max, static_cast<acc_t>(x[r * K + k]));
    for (int64_t k = 0; k < K; ++k) out[r * K + k] = static_cast<acc_t>(x[r * K + k]) - max;
  }
  exp_nonpositive_inplace<acc_t>(out, rows * K);
  for (int64_t r = 0; r < rows; ++r) {
    acc_t sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += out[r * K + k];
    const acc_t inv = acc_t(1) / sum;
    for (int64_t k = 0; k < K; ++k) out[r * K + k] *= inv;
  }
}

// Rows [r0, r1) of js_divergence: distributions read (and softmaxed) into acc_t runs, then entry_terms.
template <typename scalar_t, typename acc_t>
void divergence_rows(const scalar_t* p, const scalar_t* q, scalar_t* out, int64_t r0, int64_t r1, int64_t K,
                     bool from_logits) {
  constexpr int64_t kRun = 4096;  // entries per vectorised run
  const int64_t rows_per_run = std::max<int64_t>(1, kRun / K);
  std::vector<acc_t> pb, qb, terms(rows_per_run * K);
  // float and double probabilities are read in place; logits and half types go through a buffer
  const bool in_place = std::is_same_v<scalar_t, acc_t> && !from_logits;
  if (!in_place) {
    pb.resize(rows_per_run * K);
    qb.resize(rows_per_run * K);
  }
  for (int64_t c0 = r0; c0 < r1; c0 += rows_per_run) {
    const int64_t n = std::min(rows_per_run, r1 - c0);
    const acc_t* pp = nullptr;
    const acc_t* qp = nullptr;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      pp = p + c0 * K;
      qp = q + c0 * K;
    }
    if (from_logits) {
      softmax_rows(p + c0 * K, pb.data(), n, K);
      softmax_rows(q + c0 * K, qb.data(), n, K);
    } else if (!in_place) {
      for (int64_t i = 0; i < n * K; ++i) {
        pb[i] = static_cast<acc_t>(p[c0 * K + i]);
        qb[i] = static_cast<acc_t>(q[c0 * K + i]);
      }
    }
    if (!in_place) {
      pp = pb.data();
      qp = qb.data();
    }
    entry_terms<acc_t>(pp, qp, terms.data(), n * K);
    for (int64_t r = 0; r < n; ++r) {
      acc_t sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += terms[r * K + k];
      out[c0 + r] = static_cast<scalar_t>(jsd::clamp_js(sum));
    }
  }
}

at::Tensor js_divergence_cpu(const at::Tensor& p_in, const at::Tensor& q_in, bool from_logits) {
  jsd::check_pair(p_in, q_in, "js_divergence", /*same_rows=*/true, from_logits);
  const at::Tensor p = p_in.contiguous(), q = q_in.contiguous();
  const int64_t rows = p.size(0), K = p.size(1);
  at::Tensor out = at::empty({rows}, p.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, p.scalar_type(), "js_divergence_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* pp = p.const_data_ptr<scalar_t>();
    const scalar_t* qp = q.const_data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows, row_grain(K), [&](int64_t r0, int64_t r1) {
      divergence_rows<scalar_t, acc_t>(pp, qp, op, r0, r1, K, from_logits);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> js_divergence_backward_cpu(const at::Tensor& grad, const at::Tensor& p_in,
                                                             const at::Tensor& q_in, bool from_logits,
                                                             bool p_needs_grad, bool q_needs_grad) {
  jsd::check_pair(p_in, q_in, "js_divergence_backward", /*same_rows=*/true, from_logits);
  jsd::check_grad(grad, "js_divergence_backward", p_in, {p_in.size(0)});
  const at::Tensor p = p_in.contiguous(), q = q_in.contiguous(), g = grad.contiguous();
  const int64_t rows = p.size(0), K = p.size(1);
  at::Tensor gp = p_needs_grad ? at::empty_like(p) : at::empty({0}, p.options());
  at::Tensor gq = q_needs_grad ? at::empty_like(q) : at::empty({0}, q.options());
  const auto type = p.scalar_type();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, type, "js_divergence_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* pp = p.const_data_ptr<scalar_t>();
    const scalar_t* qp = q.const_data_ptr<scalar_t>();
    const scalar_t* gptr = g.const_data_ptr<scalar_t>();
    scalar_t* gpp = p_needs_grad ? gp.data_ptr<scalar_t>() : nullptr;
    scalar_t* gqp = q_needs_grad ? gq.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, rows, row_grain(K), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const Row<acc_t, scalar_t> pr(pp + r * K, K, 1, from_logits), qr(qp + r * K, K, 1, from_logits);
        jsd::row_js_backward(static_cast<acc_t>(gptr[r]), pr, qr, K, gpp ? gpp + r * K : nullptr, 1,
                             gqp ? gqp + r * K : nullptr, 1);
      }
    });
  });
  return {gp, gq};
}

// ---- js_pairwise --------------------------------------------------------------------------------
//
// JS(p_i, q_j) = a_i + b_j - 1/2 sum_k s log s with s = p_ik + q_jk and the row constants
// a_i = 1/2 (sum_k p_ik log p_ik + ln2 sum_k p_ik) (b_j likewise): one log per entry and pair instead of
// two, and a loop over a tile's columns that vectorises. The price is cancellation between O(1) terms:
// about K * eps absolute error (float32: ~1e-6), where js_divergence is accurate to a few ulps relative.

constexpr int64_t kTileRows = 32;   // rows of p per task
constexpr int64_t kTileCols = 512;  // columns of q per task: K x 512 values of q^T stay in L1/L2

template <typename T>
std::vector<T> row_constants(const at::Tensor& x) {  // x: [n, K] contiguous, values in T
  const int64_t n = x.size(0), K = x.size(1);
  const T* xp = x.const_data_ptr<T>();
  std::vector<T> c(n);
  at::parallel_for(0, n, row_grain(K), [&](int64_t r0, int64_t r1) {
    // In double: these constants carry the cancellation.
    for (int64_t r = r0; r < r1; ++r)
      c[r] = static_cast<T>(jsd::pairwise_row_constant<double>(xp + r * K, K));
  });
  return c;
}

// out[i, j] for rows [0, ni) of p and columns [0, nj) of the tile (qT: [K, ldq], already offset).
template <typename T>
MEDNNS_FAST_MULTIVERSION void pairwise_tile(const T* __restrict p, int64_t ni, int64_t K,
                                            const T* __restrict qT, int64_t ldq, int64_t nj,
                                            const T* __restrict a, const T* __restrict b, T* __restrict out,
                                            int64_t ldo) {
  T acc[kTileCols];
  const T hi = static_cast<T>(jsd::kLn2);
  for (int64_t i = 0; i < ni; ++i) {
    std::fill(acc, acc + nj, T(0));
    for (int64_t k = 0; k < K; ++k) {
      const T pv = p[i * K + k];
      const T* __restrict qk = qT + k * ldq;
#pragma omp simd
      for (int64_t j = 0; j < nj; ++j) {
        const T s = pv + qk[j];
        acc[j] += s * vec::log(s);
      }
    }
    T* __restrict o = out + i * ldo;
    const T ai = a[i];
#pragma omp simd
    for (int64_t j = 0; j < nj; ++j) {
      const T v = ai + b[j] - T(0.5) * acc[j];
      o[j] = v < T(0) ? T(0) : (v > hi ? hi : v);
    }
  }
}

template <typename T>
void pairwise_forward(const at::Tensor& p, const at::Tensor& q, at::Tensor& out) {
  const int64_t N = p.size(0), M = q.size(0), K = p.size(1);
  const std::vector<T> a = row_constants<T>(p), b = row_constants<T>(q);
  const at::Tensor qT = q.t().contiguous();
  const T* pp = p.const_data_ptr<T>();
  const T* qTp = qT.const_data_ptr<T>();
  T* op = out.data_ptr<T>();
  const int64_t row_tiles = (N + kTileRows - 1) / kTileRows, col_tiles = (M + kTileCols - 1) / kTileCols;
  at::parallel_for(0, row_tiles * col_tiles, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i0 = (t / col_tiles) * kTileRows, j0 = (t % col_tiles) * kTileCols;
      pairwise_tile<T>(pp + i0 * K, std::min(kTileRows, N - i0), K, qTp + j0, M,
                       std::min(kTileCols, M - j0), a.data() + i0, b.data() + j0, op + i0 * M + j0, M);
    }
  });
}

// Gradient of sum_ij g_ij JS(x_i, y_j) with respect to x (the other side: swap x and y, transpose g):
// grad_x[i, k] = 1/2 ((ln2 + log x_ik) G_i - sum_j g_ij log(x_ik + y_jk)), G_i = sum_j g_ij; 0 where
// x_ik == 0 (the convention of jsd_common.h).
template <typename T>
MEDNNS_FAST_MULTIVERSION void side_grad_row(const T* __restrict x, int64_t K, const T* __restrict yT,
                                            int64_t m, const T* __restrict g, T* __restrict out) {
  T G = 0;
#pragma omp simd reduction(+ : G)
  for (int64_t j = 0; j < m; ++j) G += g[j];
  for (int64_t k = 0; k < K; ++k) {
    const T xv = x[k];
    const T* __restrict yk = yT + k * m;
    T S = 0;
#pragma omp simd reduction(+ : S)
    for (int64_t j = 0; j < m; ++j) S += g[j] * vec::log(xv + yk[j]);
    out[k] = jsd::pairwise_side_grad<T>(xv, G, S);
  }
}

template <typename T>
void side_grad(const at::Tensor& x, const at::Tensor& y, const at::Tensor& g, at::Tensor& out) {
  const int64_t n = x.size(0), m = y.size(0), K = x.size(1);
  const at::Tensor yT = y.t().contiguous();
  const T* xp = x.const_data_ptr<T>();
  const T* yTp = yT.const_data_ptr<T>();
  const T* gp = g.const_data_ptr<T>();
  T* op = out.data_ptr<T>();
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, m * K));
  at::parallel_for(0, n, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) side_grad_row<T>(xp + r * K, K, yTp, m, gp + r * m, op + r * K);
  });
}

// The kernels run in float or double: half inputs are widened once (O((N + M) K), not per pair).
at::ScalarType compute_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor js_pairwise_cpu(const at::Tensor& p_in, const at::Tensor& q_in) {
  jsd::check_pair(p_in, q_in, "js_pairwise", /*same_rows=*/false, /*from_logits=*/false);
  const at::ScalarType ct = compute_type(p_in);
  const at::Tensor p = p_in.to(ct).contiguous(), q = q_in.to(ct).contiguous();
  at::Tensor out = at::empty({p.size(0), q.size(0)}, p.options());
  if (out.numel() > 0) {
    if (ct == at::kDouble) pairwise_forward<double>(p, q, out);
    else pairwise_forward<float>(p, q, out);
  }
  return out.to(p_in.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> js_pairwise_backward_cpu(const at::Tensor& grad, const at::Tensor& p_in,
                                                           const at::Tensor& q_in, bool p_needs_grad,
                                                           bool q_needs_grad) {
  jsd::check_pair(p_in, q_in, "js_pairwise_backward", /*same_rows=*/false, /*from_logits=*/false);
  jsd::check_grad(grad, "js_pairwise_backward", p_in, {p_in.size(0), q_in.size(0)});
  const at::ScalarType ct = compute_type(p_in);
  const at::Tensor p = p_in.to(ct).contiguous(), q = q_in.to(ct).contiguous();
  const at::Tensor g = grad.to(ct).contiguous();
  at::Tensor gp = at::empty({0}, p_in.options()), gq = at::empty({0}, q_in.options());
  auto run = [&](const at::Tensor& x, const at::Tensor& y, const at::Tensor& gx) {
    at::Tensor out = at::empty_like(x);
    if (ct == at::kDouble) side_grad<double>(x, y, gx, out);
    else side_grad<float>(x, y, gx, out);
    return out.to(p_in.scalar_type());
  };
  if (p_needs_grad) gp = run(p, q, g);
  if (q_needs_grad) gq = run(q, p, g.t().contiguous());
  return {gp, gq};
}

// ---- js_stability -------------------------------------------------------------------------------

// (epoch, edge) rows per task. A DARTS cell's history (200 x 14 x 8) is a fraction of a millisecond of
// work: it stays on one thread, where waking others (on a busy machine) costs more than it saves.
// Work per row is K * (window + 1), capped before multiplying so that a huge window cannot overflow.
int64_t stability_grain(int64_t K, int64_t window) {
  constexpr int64_t kTarget = int64_t{1} << 18;
  const int64_t per_row = std::min(kTarget, K) * (std::min(kTarget, window) + 1);
  return std::max<int64_t>(1, kTarget / per_row);
}

// history [T, E, K] -> probabilities P [T, E, K] in acc_t (softmax of each row when from_logits).
template <typename acc_t, typename scalar_t>
std::vector<acc_t> stability_probs(const at::Tensor& h, bool from_logits) {
  const int64_t rows = h.size(0) * h.size(1), K = h.size(2);
  std::vector<acc_t> P(rows * K);
  const scalar_t* hp = h.const_data_ptr<scalar_t>();
  at::parallel_for(0, rows, row_grain(K), [&](int64_t r0, int64_t r1) {
    if (from_logits) {
      softmax_rows(hp + r0 * K, P.data() + r0 * K, r1 - r0, K);
    } else {
      for (int64_t i = r0 * K; i < r1 * K; ++i) P[i] = static_cast<acc_t>(hp[i]);
    }
  });
  return P;
}

at::Tensor js_stability_cpu(const at::Tensor& history, int64_t window, bool from_logits) {
  jsd::check_history(history, window, from_logits);
  const at::Tensor h = history.contiguous();
  const int64_t T = h.size(0), E = h.size(1), K = h.size(2);
  at::Tensor out = at::empty({T, E}, h.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "js_stability_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const std::vector<acc_t> P = stability_probs<acc_t, scalar_t>(h, from_logits);
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t epoch = E * K;  // entries per epoch
    std::fill(op, op + std::min(T, window) * E, std::numeric_limits<scalar_t>::infinity());
    if (T <= window || E == 0) return;  // no epoch with a full window, or no edge
    // Epochs t >= window, in runs: the window means of a run, then its entry terms (vectorised, as in
    // js_divergence), then the per-edge sums.
    const int64_t grain = std::max<int64_t>(1, stability_grain(K, window) / E);
    at::parallel_for(window, T, grain, [&](int64_t t0, int64_t t1) {
      const int64_t n = (t1 - t0) * epoch;
      std::vector<acc_t> mean(n, acc_t(0)), terms(n);
      for (int64_t t = t0; t < t1; ++t) {
        acc_t* m = mean.data() + (t - t0) * epoch;
        for (int64_t s = t - window; s < t; ++s) {
          const acc_t* ps = P.data() + s * epoch;
          for (int64_t i = 0; i < epoch; ++i) m[i] += ps[i];
        }
        for (int64_t i = 0; i < epoch; ++i) m[i] /= static_cast<acc_t>(window);
      }
      entry_terms<acc_t>(P.data() + t0 * epoch, mean.data(), terms.data(), n);
      for (int64_t r = 0; r < (t1 - t0) * E; ++r) {
        acc_t sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += terms[r * K + k];
        op[t0 * E + r] = static_cast<scalar_t>(jsd::clamp_js(sum));
      }
    });
  });
  return out;
}

at::Tensor js_stability_backward_cpu(const at::Tensor& grad, const at::Tensor& history, int64_t window,
                                     bool from_logits) {
  jsd::check_history(history, window, from_logits);
  const int64_t T = history.size(0), E = history.size(1), K = history.size(2);
  jsd::check_grad(grad, "js_stability_backward", history, {T, E});
  const at::Tensor h = history.contiguous(), g = grad.contiguous();
  at::Tensor out = at::empty({T, E, K}, h.options());
  const auto type = h.scalar_type();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, type, "js_stability_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const std::vector<acc_t> P = stability_probs<acc_t, scalar_t>(h, from_logits);
    // Per (t, e): the gradient of JS(P_t, mean) with respect to P_t ("self") and to the mean.
    std::vector<acc_t> self(T * E * K), gmean(T * E * K);
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    at::parallel_for(0, T * E, stability_grain(K, window), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        jsd::stability_row_backward(static_cast<acc_t>(gp[r]), P.data(), self.data(), gmean.data(), r / E,
                                    r % E, E, K, window);
    });
    // Per (s, e): collect the mean's gradient from the epochs whose window holds s, then softmax.
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, T * E, stability_grain(K, window), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        jsd::stability_gather_row(P.data(), self.data(), gmean.data(), op, r / E, r % E, T, E, K, window,
                                  from_logits);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CPU, m) {
  m.impl("js_divergence", &js_divergence_cpu);
  m.impl("js_divergence_backward", &js_divergence_backward_cpu);
  m.impl("js_pairwise", &js_pairwise_cpu);
  m.impl("js_pairwise_backward", &js_pairwise_backward_cpu);
  m.impl("js_stability", &js_stability_cpu);
  m.impl("js_stability_backward", &js_stability_backward_cpu);
}

}  // namespace mednns_fast
