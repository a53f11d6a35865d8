// Jensen-Shannon divergence: argument checks and the per-entry / per-row maths shared by the CPU and
// CUDA kernels (the C10_HOST_DEVICE functions compile for both).
//
// Conventions (docs/architecture.md, "JS conventions"): natural log; JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m) with
// m = (p + q) / 2 (the divergence: scipy's jensenshannon returns its square root); 0 log 0 = 0; the
// result is clamped to [0, ln 2] (it only removes rounding error; gradients pass through the clamp).
//
// Gradient convention: dJS/dp_k = 1/2 log(2 p_k / (p_k + q_k)) where p_k > 0 and 0 where p_k == 0
// (the true one-sided derivative there is -inf: a zero entry is treated as outside the support, which
// is also what the softmax Jacobian makes of it on the logits path). Symmetric in q.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/macros/Macros.h>

#include <cmath>
#include <limits>

#include "checks.h"

namespace mednns_fast {
namespace jsd {

constexpr double kLn2 = 0.693147180559945309417232121458176568;

C10_HOST_DEVICE inline float log1p_(float x) { return ::log1pf(x); }
C10_HOST_DEVICE inline double log1p_(double x) { return ::log1p(x); }
C10_HOST_DEVICE inline float exp_(float x) { return ::expf(x); }
C10_HOST_DEVICE inline double exp_(double x) { return ::exp(x); }

// h(d) = (1 + d) log(1 + d) + (1 - d) log(1 - d) on [-1, 1] with 0 log 0 = 0. Near d = 0 the two logs
// cancel to O(d^2), so there the (all-positive) series sum_n d^2n / (n (2n - 1)) is used instead:
// h is then accurate to a few ulps even for near-identical p and q, and never negative.
template <typename T>
C10_HOST_DEVICE inline T h(T d) {
  const T a = d < T(0) ? -d : d;
  if (a < T(0.1)) {
    // 9 terms: the first dropped one is below 1e-18 relative at |d| = 0.1.
    const T x = d * d;
    return x * (T(1) + x * (T(1) / 6 + x * (T(1) / 15 + x * (T(1) / 28 + x * (T(1) / 45 +
           x * (T(1) / 66 + x * (T(1) / 91 + x * (T(1) / 120 + x * (T(1) / 153)))))))));
  }
  const T u = T(1) + d, v = T(1) - d;
  return (u > T(0) ? u * log1p_(d) : T(0)) + (v > T(0) ? v * log1p_(-d) : T(0));
}

// One entry's share of JS(p, q): 1/2 [p log(2p/s) + q log(2q/s)] = s h(d) / 4 with s = p + q,
// d = (p - q) / s.
template <typename T>
C10_HOST_DEVICE inline T term(T p, T q) {
  const T s = p + q;
  if (!(s > T(0))) return T(0);
  return s * h((p - q) / s) / T(4);
}

// dJS/dp for one entry: 1/2 log(2p / (p + q)) = 1/2 log1p((p - q) / (p + q)); 0 where p == 0.
template <typename T>
C10_HOST_DEVICE inline T dterm(T p, T q) {
  if (!(p > T(0))) return T(0);
  return T(0.5) * log1p_((p - q) / (p + q));
}

template <typename T>
C10_HOST_DEVICE inline T clamp_js(T v) {
  const T hi = static_cast<T>(kLn2);
  return v < T(0) ? T(0) : (v > hi ? hi : v);
}

// Reads row `x` (K entries, `stride` apart) as a distribution: the values themselves, or their
// softmax (fused: the max and the normaliser are found once, entries are recomputed on access).
// A -inf logit is a probability of exactly 0.
template <typename acc_t, typename scalar_t>
struct Row {
  const scalar_t* x;
  int64_t stride;
  bool logits;
  acc_t max = acc_t(0), inv_sum = acc_t(1);

  C10_HOST_DEVICE Row(const scalar_t* x_, int64_t K, int64_t stride_, bool logits_)
      : x(x_), stride(stride_), logits(logits_) {
    if (!logits) return;
    max = -std::numeric_limits<acc_t>::infinity();
    for (int64_t k = 0; k < K; ++k) {
      const acc_t v = static_cast<acc_t>(x[k * stride]);
      max = v > max ? v : max;
    }
    acc_t sum = acc_t(0);
    for (int64_t k = 0; k < K; ++k) sum += exp_(static_cast<acc_t>(x[k * stride]) - max);
    inv_sum = acc_t(1) / sum;
  }

  C10_HOST_DEVICE acc_t operator[](int64_t k) const {
    const acc_t v = static_cast<acc_t>(x[k * stride]);
    return logits ? exp_(v - max) * inv_sum : v;
  }
};

// JS of two rows, clamped.
template <typename acc_t, typename RowP, typename RowQ>
C10_HOST_DEVICE inline acc_t row_js(const RowP& p, const RowQ& q, int64_t K) {
  acc_t sum = acc_t(0);
  for (int64_t k = 0; k < K; ++k) sum += term(p[k], q[k]);
  return clamp_js(sum);
}

// Gradient of g * JS(a, b) with respect to row a's inputs (probabilities, or logits when the row reads
// logits: then grad_logit = a * (grad_a - <grad_a, a>)). JS is symmetric, so one side serves both.
template <typename acc_t, typename out_t, typename RowA, typename RowB>
C10_HOST_DEVICE inline void row_js_backward_side(acc_t g, const RowA& a, const RowB& b, int64_t K, out_t* ga,
                                                 int64_t ga_stride) {
  acc_t dot = acc_t(0);
  if (a.logits)
    for (int64_t k = 0; k < K; ++k) dot += a[k] * g * dterm(a[k], b[k]);
  for (int64_t k = 0; k < K; ++k) {
    const acc_t ak = a[k], d = g * dterm(ak, b[k]);
    ga[k * ga_stride] = static_cast<out_t>(a.logits ? ak * (d - dot) : d);
  }
}

// Gradient of g * JS(p, q) with respect to both rows' inputs. Either output pointer may be null.
template <typename acc_t, typename out_t, typename RowP, typename RowQ>
C10_HOST_DEVICE inline void row_js_backward(acc_t g, const RowP& p, const RowQ& q, int64_t K,
                                            out_t* gp, int64_t gp_stride, out_t* gq, int64_t gq_stride) {
  if (gp != nullptr) row_js_backward_side(g, p, q, K, gp, gp_stride);
  if (gq != nullptr) row_js_backward_side(g, q, p, K, gq, gq_stride);
}

// ---- js_pairwise: row constants and the side gradient -------------------------------------------

C10_HOST_DEVICE inline float log_(float x) { return ::logf(x); }
C10_HOST_DEVICE inline double log_(double x) { return ::log(x); }

// a = 1/2 (sum_k x_k log x_k + ln2 sum_k x_k), so that JS(p_i, q_j) = a_i + b_j - 1/2 sum_k s log s
// with s = p_ik + q_jk (one log per entry and pair).
template <typename acc_t, typename scalar_t>
C10_HOST_DEVICE inline acc_t pairwise_row_constant(const scalar_t* x, int64_t K) {
  acc_t xlogx = acc_t(0), sum = acc_t(0);
  for (int64_t k = 0; k < K; ++k) {
    const acc_t v = static_cast<acc_t>(x[k]);
    xlogx += v > acc_t(0) ? v * log_(v) : acc_t(0);
    sum += v;
  }
  return acc_t(0.5) * (xlogx + static_cast<acc_t>(kLn2) * sum);
}

// d/dx_ik of sum_j g_ij JS(x_i, y_j) = 1/2 ((ln2 + log x_ik) G_i - S_ik), with G_i = sum_j g_ij and
// S_ik = sum_j g_ij log(x_ik + y_jk); 0 where x_ik == 0.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t pairwise_side_grad(acc_t x, acc_t G, acc_t S) {
  if (!(x > acc_t(0))) return acc_t(0);
  return acc_t(0.5) * ((static_cast<acc_t>(kLn2) + log_(x)) * G - S);
}

// ---- js_stability -------------------------------------------------------------------------------
// P is the [T, E, K] history as probabilities (acc_t); row (t, e) starts at (t * E + e) * K.

template <typename acc_t, typename scalar_t>
C10_HOST_DEVICE inline void stability_probs_row(const scalar_t* history, acc_t* P, int64_t r, int64_t K,
                                                bool from_logits) {
  const scalar_t* x = history + r * K;
  acc_t* out = P + r * K;
  if (!from_logits) {
    for (int64_t k = 0; k < K; ++k) out[k] = static_cast<acc_t>(x[k]);
    return;
  }
  // softmax with one exp per entry (Row recomputes them on every read)
  acc_t max = -std::numeric_limits<acc_t>::infinity(), sum = acc_t(0);
  for (int64_t k = 0; k < K; ++k) max = static_cast<acc_t>(x[k]) > max ? static_cast<acc_t>(x[k]) : max;
  for (int64_t k = 0; k < K; ++k) sum += (out[k] = exp_(static_cast<acc_t>(x[k]) - max));
  const acc_t inv = acc_t(1) / sum;
  for (int64_t k = 0; k < K; ++k) out[k] *= inv;
}

// The mean of `window` consecutive epochs of one edge, entry by entry (read like a Row).
template <typename acc_t>
struct WindowMean {
  const acc_t* first;  // entry 0 of the oldest epoch in the window
  int64_t epoch_stride, window;
  bool logits = false;
  C10_HOST_DEVICE acc_t operator[](int64_t k) const {
    acc_t sum = acc_t(0);
    for (int64_t s = 0; s < window; ++s) sum += first[s * epoch_stride + k];
    return sum / static_cast<acc_t>(window);
  }
};

// JS(P[t, e], mean of P[t - window .. t - 1, e]); +inf for the first `window` epochs.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t stability_value(const acc_t* P, int64_t t, int64_t e, int64_t E, int64_t K,
                                             int64_t window) {
  if (t < window) return std::numeric_limits<acc_t>::infinity();
  const Row<acc_t, acc_t> now(P + (t * E + e) * K, K, 1, false);
  const WindowMean<acc_t> mean{P + ((t - window) * E + e) * K, E * K, window};
  return row_js<acc_t>(now, mean, K);
}

// Backward, step 1, per (t, e): self[t, e] = g dJS/dP_t and gmean[t, e] = g dJS/dmean (0 when t < window).
template <typename acc_t>
C10_HOST_DEVICE inline void stability_row_backward(acc_t g, const acc_t* P, acc_t* self, acc_t* gmean,
                                                   int64_t t, int64_t e, int64_t E, int64_t K,
                                                   int64_t window) {
  const int64_t r = t * E + e;
  if (t < window) {
    for (int64_t k = 0; k < K; ++k) self[r * K + k] = gmean[r * K + k] = acc_t(0);
    return;
  }
  const Row<acc_t, acc_t> now(P + r * K, K, 1, false);
  const WindowMean<acc_t> mean{P + ((t - window) * E + e) * K, E * K, window};
  row_js_backward(g, now, mean, K, self + r * K, 1, gmean + r * K, 1);
}

// Backward, step 2, per (s, e): P_s's gradient is its own term plus 1/window of the mean's gradient of
// every epoch t in [s + 1, s + window] (those whose window holds s); then through the softmax.
// Overwrites self[s, e] with the probability gradient.
template <typename acc_t, typename scalar_t>
C10_HOST_DEVICE inline void stability_gather_row(const acc_t* P, acc_t* self, const acc_t* gmean,
                                                 scalar_t* out, int64_t s, int64_t e, int64_t T, int64_t E,
                                                 int64_t K, int64_t window, bool from_logits) {
  const int64_t r = s * E + e;
  const int64_t t0 = s + 1 > window ? s + 1 : window, t1 = s + window < T - 1 ? s + window : T - 1;
  acc_t dot = acc_t(0);
  for (int64_t k = 0; k < K; ++k) {
    acc_t sum = acc_t(0);
    for (int64_t t = t0; t <= t1; ++t) sum += gmean[(t * E + e) * K + k];
    const acc_t gk = self[r * K + k] + sum / static_cast<acc_t>(window);
    self[r * K + k] = gk;
    dot += gk * P[r * K + k];
  }
  for (int64_t k = 0; k < K; ++k) {
    const acc_t gk = self[r * K + k], pk = P[r * K + k];
    out[r * K + k] = static_cast<scalar_t>(from_logits ? pk * (gk - dot) : gk);
  }
}

// ---- host-side argument checks -------------------------------------------------------------------

// Flags of check_values: an entry that is NaN or infinite (probabilities) / NaN or +inf (logits), a
// negative probability, a probability above max_probability, a row of logits that is all -inf.
struct ValueFlags {
  bool bad_entry = false, negative = false, too_large = false, empty_row = false;
};

// Probabilities are refused above 2^64 (2^512 for float64, which accumulates in float64): beyond, p + q
// and the s log s sums overflow the accumulation type (NaN or a wrong 0/ln 2). JS is homogeneous
// (JS(p / c, q / c) = JS(p, q) / c), so such rows can be scaled down by the caller.
inline double max_probability(at::ScalarType t) {
  return t == at::kDouble ? std::ldexp(1.0, 512) : std::ldexp(1.0, 64);
}

// Small CPU tensors are scanned directly: a few ATen reductions would cost more in dispatch than the scan.
inline ValueFlags scan_values_cpu(const at::Tensor& t, bool from_logits) {
  ValueFlags f;
  const at::Tensor c = t.contiguous();
  const int64_t K = c.size(-1), rows = c.numel() / K;
  const double largest = max_probability(c.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, c.scalar_type(), "jsd_check_values", [&] {
    const scalar_t* x = c.const_data_ptr<scalar_t>();
    for (int64_t r = 0; r < rows; ++r) {
      bool all_neginf = true;
      for (int64_t k = 0; k < K; ++k) {
        const double v = static_cast<double>(x[r * K + k]);
        if (from_logits) {
          f.bad_entry |= std::isnan(v) || v == std::numeric_limits<double>::infinity();
          all_neginf = all_neginf && v == -std::numeric_limits<double>::infinity();
        } else {
          f.bad_entry |= !std::isfinite(v);
          f.negative |= v < 0;
          f.too_large |= v > largest;
        }
      }
      f.empty_row |= from_logits && all_neginf;
    }
  });
  return f;
}

// One reduction pass and one host sync: the min and max (NaN propagates into both) of probabilities,
// the row maxima of logits.
inline ValueFlags reduce_values(const at::Tensor& t, bool from_logits) {
  ValueFlags f;
  if (from_logits) {
    const at::Tensor row_max = t.amax(-1);
    const at::Tensor bad_entry = at::logical_or(at::isnan(row_max), at::isposinf(row_max)).any();
    const at::Tensor flags = at::stack({bad_entry, at::isneginf(row_max).any()}).cpu();
    const bool* b = flags.const_data_ptr<bool>();
    f.bad_entry = b[0];
    f.empty_row = b[1];
  } else {
    const auto [lo, hi] = at::aminmax(t);
    const at::Tensor range = at::stack({lo, hi}).to(at::kDouble).cpu();
    const double* r = range.const_data_ptr<double>();
    f.bad_entry = !(std::isfinite(r[0]) && std::isfinite(r[1]));
    f.negative = r[0] < 0;
    f.too_large = r[1] > max_probability(t.scalar_type());
  }
  return f;
}

// Probabilities must be finite and >= 0; logits may hold -inf (probability 0) but not NaN or +inf,
// and every row (last dim) needs one finite logit.
inline void check_values(const at::Tensor& t, const char* name, bool from_logits) {
  if (t.numel() == 0) return;
  constexpr int64_t kScanLimit = 1 << 16;
  const ValueFlags f = t.device().is_cpu() && t.numel() <= kScanLimit ? scan_values_cpu(t, from_logits)
                                                                       : reduce_values(t, from_logits);
  if (from_logits) {
    TORCH_CHECK_VALUE(!f.bad_entry, name, " (logits) must not contain NaN or +inf");
    TORCH_CHECK_VALUE(!f.empty_row, name,
                      " (logits) has a row whose every entry is -inf (an empty distribution)");
  } else {
    TORCH_CHECK_VALUE(!f.bad_entry, name, " (probabilities) must be finite but contains NaN or infinity");
    TORCH_CHECK_VALUE(!f.negative, name, " (probabilities) must be non-negative but has negative entries");
    TORCH_CHECK_VALUE(!f.too_large, name,
                      " (probabilities) must be at most 2^64 (2^512 in float64): larger entries overflow the "
                      "sums; divide the inputs by one common factor c (JS(p / c, q / c) = JS(p, q) / c)");
  }
}

// Two [rows, K] inputs of one dtype and device, K >= 1 (`same_rows`: js_divergence; else js_pairwise).
inline void check_pair(const at::Tensor& p, const at::Tensor& q, const char* op, bool same_rows,
                       bool from_logits) {
  const std::string pn = std::string(op) + ": p", qn = std::string(op) + ": q";
  check_floating(p, pn.c_str());
  check_floating(q, qn.c_str());
  check_dim(p, pn.c_str(), 2);
  check_dim(q, qn.c_str(), 2);
  check_same_dtype(q, qn.c_str(), p, "p");
  check_same_device(q, qn.c_str(), p, "p");
  TORCH_CHECK_VALUE(p.size(1) == q.size(1), op, ": p has K=", p.size(1), " entries per row but q has K=",
                    q.size(1));
  TORCH_CHECK_VALUE(p.size(1) >= 1, op, ": distributions need K >= 1 entries, got shape ", p.sizes());
  if (same_rows)
    TORCH_CHECK_VALUE(p.sizes() == q.sizes(), op, ": p has shape ", p.sizes(), " but q has shape ",
                      q.sizes(), "; they must match");
  check_values(p, pn.c_str(), from_logits);
  check_values(q, qn.c_str(), from_logits);
}

inline void check_history(const at::Tensor& history, int64_t window, bool from_logits) {
  check_floating(history, "js_stability: history");
  check_dim(history, "js_stability: history", 3);
  TORCH_CHECK_VALUE(history.size(2) >= 1, "js_stability: history must be [T, E, K] with K >= 1, got shape ",
                    history.sizes());
  TORCH_CHECK_VALUE(window >= 1, "js_stability: window must be >= 1, got ", window);
  check_values(history, "js_stability: history", from_logits);
}

// The gradient argument of a backward op: same dtype and device as `ref`, the given shape.
inline void check_grad(const at::Tensor& grad, const char* op, const at::Tensor& ref, at::IntArrayRef shape) {
  const std::string gn = std::string(op) + ": grad";
  check_same_dtype(grad, gn.c_str(), ref, "the input");
  check_same_device(grad, gn.c_str(), ref, "the input");
  TORCH_CHECK_VALUE(grad.sizes() == shape, op, ": grad has shape ", grad.sizes(), ", expected ", shape);
}

}  // namespace jsd
}  // namespace mednns_fast
