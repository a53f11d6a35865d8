// Host code of the FID family shared by the CPU and CUDA kernels: argument checks, the streaming
// statistics update (two-pass centred moments of a batch, then Chan's merge), and the exact trace term
// tr sqrt(S_i S_j) of one pair of datasets from their factors S = L L^T.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "checks.h"

namespace mednns_fast {

// ---- streaming statistics ------------------------------------------------------------------------

inline void check_stats_update_args(const at::Tensor& mean, const at::Tensor& m2, const at::Tensor& features,
                                    int64_t count) {
  check_floating(features, "feature_stats_update_: features");
  check_dim(features, "feature_stats_update_: features", 2);
  TORCH_CHECK_VALUE(mean.defined() && (mean.scalar_type() == at::kDouble || mean.scalar_type() == at::kFloat),
                    "feature_stats_update_: mean must be a float64 or float32 tensor");
  check_dim(mean, "feature_stats_update_: mean", 1);
  check_dim(m2, "feature_stats_update_: m2", 2);
  check_same_dtype(m2, "feature_stats_update_: m2", mean, "mean");
  check_same_device(mean, "feature_stats_update_: mean", m2, "m2");
  check_same_device(features, "feature_stats_update_: features", m2, "m2");
  const int64_t d = mean.size(0);
  TORCH_CHECK_VALUE(m2.size(0) == d && m2.size(1) == d, "feature_stats_update_: m2 must be [", d, ", ", d,
                    "] to match mean [", d, "], got shape ", m2.sizes());
  TORCH_CHECK_VALUE(features.size(1) == d, "feature_stats_update_: features must be [n, ", d,
                    "] (the statistics' dim), got shape ", features.sizes());
  TORCH_CHECK_VALUE(count >= 0, "feature_stats_update_: count must be >= 0, got ", count);
}

// Rows centred per chunk: about 8 MiB of float64 at a time (the d x d product takes one BLAS call per chunk).
inline int64_t stats_chunk_rows(int64_t dim) {
  return std::max<int64_t>(64, (int64_t(1) << 20) / std::max<int64_t>(dim, 1));
}

// Columns per tile of the d x d product. A symmetric product needs only its upper block triangle: about
// half the flops of one GEMM (ATen has no SYRK), at the price of mirroring it once per update.
constexpr int64_t kProductTile = 256;

// True when the flops saved on a batch of `rows` outweigh one mirroring pass over m2.
inline bool use_upper_blocks(int64_t rows, int64_t dim) { return rows >= 256 && dim > kProductTile; }

// m += y^T y; with upper_only, only the blocks on and above the diagonal are updated.
inline void add_gram(at::Tensor& m, const at::Tensor& y, bool upper_only) {
  const int64_t d = y.size(1);
  if (!upper_only) {
    m.addmm_(y.t(), y);
    return;
  }
  for (int64_t i = 0; i < d; i += kProductTile) {
    const int64_t t = std::min(kProductTile, d - i);
    at::Tensor block_row = m.narrow(0, i, t).narrow(1, i, d - i);
    block_row.addmm_(y.narrow(1, i, t).t(), y.narrow(1, i, d - i));
  }
}

// Copies the blocks above the diagonal (written by add_gram) below it.
inline void mirror_upper_blocks(at::Tensor& m2) {
  const int64_t d = m2.size(0);
  for (int64_t i = 0; i + kProductTile < d; i += kProductTile) {
    const int64_t rest = d - i - kProductTile;
    m2.narrow(0, i + kProductTile, rest).narrow(1, i, kProductTile)
        .copy_(m2.narrow(0, i, kProductTile).narrow(1, i + kProductTile, rest).t());
  }
}

// Kernels supplies, for its device:
//   static at::Tensor column_mean(const at::Tensor& x);            // [n, d] rows contiguous -> [d] float64
//   static void centre(const at::Tensor& x, const at::Tensor& mean, at::Tensor& out);
//                                                                  // out[i, j] = x[i, j] - mean[j] (float64 maths)
// Two passes over the batch: its mean in float64, then the centred rows in chunks, whose products are
// accumulated by BLAS into m2. The raw formula sum(x x^T) - n mu mu^T is never formed, so large offsets
// cost no accuracy. Finally Chan's merge folds the batch into the running (count, mean, m2).
template <typename Kernels>
void feature_stats_update(at::Tensor& mean, at::Tensor& m2, const at::Tensor& features, int64_t count) {
  check_stats_update_args(mean, m2, features, count);
  const int64_t nb = features.size(0), d = features.size(1);
  if (nb == 0 || d == 0) return;
  // Rows may sit at any stride; within a row the kernels need unit stride.
  const at::Tensor x = features.stride(1) == 1 ? features : features.contiguous();
  if (count == 0) m2.zero_();  // an empty state: whatever mean and m2 held is overwritten
  const at::Tensor batch_mean = Kernels::column_mean(x);
  // NaN or infinity anywhere in the batch reaches its column sums: one check of d values covers it.
  TORCH_CHECK_VALUE(at::isfinite(batch_mean).all().item<bool>(),
                    "feature_stats_update_: features must be finite but contain NaN or infinity");

  const int64_t chunk = std::min(stats_chunk_rows(d), nb);
  at::Tensor buffer = at::empty({chunk, d}, m2.options().memory_format(at::MemoryFormat::Contiguous));
  const bool upper_only = use_upper_blocks(nb, d);
  for (int64_t r0 = 0; r0 < nb; r0 += chunk) {
    const int64_t rows = std::min(chunk, nb - r0);
    at::Tensor y = buffer.narrow(0, 0, rows);
    Kernels::centre(x.narrow(0, r0, rows), batch_mean, y);
    add_gram(m2, y, upper_only);
  }
  if (upper_only) mirror_upper_blocks(m2);

  // Chan et al.: M2 = M2_a + M2_b + delta delta^T n_a n_b / n, mean = mean_a + delta n_b / n.
  if (count == 0) {
    mean.copy_(batch_mean);
    return;
  }
  const double n = static_cast<double>(count) + static_cast<double>(nb);
  const at::Tensor delta = (batch_mean - mean.to(at::kDouble)).to(m2.scalar_type());
  m2.addr_(delta, delta, 1.0, static_cast<double>(count) * static_cast<double>(nb) / n);
  mean.add_(delta, static_cast<double>(nb) / n);
}

// ---- covariance checks ---------------------------------------------------------------------------

inline void check_square(const at::Tensor& sigma, const char* name) {
  check_floating(sigma, name);
  TORCH_CHECK_VALUE(sigma.dim() == 2 && sigma.size(0) == sigma.size(1), name,
                    " must be a square [d, d] matrix, got shape ", sigma.sizes());
}

// (max |S_ij - S_ji|, max |S_ij|, number of non-finite entries) as float64 [3], from ATen ops (used on
// devices without a fused pass). Non-finite entries count as 0 in the two maxima.
inline at::Tensor covariance_defects_aten(const at::Tensor& sigma) {
  const at::Tensor finite = at::isfinite(sigma);
  const at::Tensor s = at::where(finite, sigma, at::zeros({}, sigma.options())).to(at::kDouble);
  return at::stack({(s - s.t()).abs().max(), s.abs().max(), finite.logical_not().sum().to(at::kDouble)});
}

// ---- pairwise trace terms ------------------------------------------------------------------------

// The factors L_i ([d, r_i], S_i = L_i L_i^T) as float64, checked to share d and a device; lower[i]
// marks a square lower-triangular factor, sigmas[i] (optional, [d, d]) is S_i itself.
struct PairInputs {
  std::vector<at::Tensor> factors, sigmas;  // sigmas[i] undefined where not given
  std::vector<char> lower;
};

inline PairInputs pair_inputs(at::TensorList factors, const c10::List<bool>& lower,
                              const c10::List<std::optional<at::Tensor>>& sigmas) {
  TORCH_CHECK_VALUE(!factors.empty(), "fid_trace_sqrt_pairs: factors must hold at least one tensor");
  TORCH_CHECK_VALUE(lower.size() == factors.size() && sigmas.size() == factors.size(),
                    "fid_trace_sqrt_pairs: lower and sigmas need one entry per factor (", factors.size(),
                    "), got ", lower.size(), " and ", sigmas.size());
  PairInputs in;
  const int64_t d = factors[0].size(0);
  for (size_t i = 0; i < factors.size(); ++i) {
    const std::string name = "fid_trace_sqrt_pairs: factors[" + std::to_string(i) + "]";
    check_floating(factors[i], name.c_str());
    check_dim(factors[i], name.c_str(), 2);
    check_same_device(factors[i], name.c_str(), factors[0], "factors[0]");
    TORCH_CHECK_VALUE(factors[i].size(0) == d, name, " is [", factors[i].size(0), ", r] but factors[0] is [", d,
                      ", r]; all factors need one dim d");
    TORCH_CHECK_VALUE(!lower.get(i) || factors[i].size(1) == d, name,
                      " is marked lower-triangular so it must be square, got shape ", factors[i].sizes());
    in.factors.push_back(factors[i].to(at::kDouble));
    in.lower.push_back(lower.get(i));
    const std::optional<at::Tensor> sigma = sigmas.get(i);
    if (sigma.has_value() && sigma->defined()) {
      const std::string sname = "fid_trace_sqrt_pairs: sigmas[" + std::to_string(i) + "]";
      check_floating(*sigma, sname.c_str());
      check_same_device(*sigma, sname.c_str(), factors[0], "factors[0]");
      TORCH_CHECK_VALUE(sigma->dim() == 2 && sigma->size(0) == d && sigma->size(1) == d, sname, " must be [", d,
                        ", ", d, "], got shape ", sigma->sizes());
      in.sigmas.push_back(sigma->to(at::kDouble));
    } else {
      in.sigmas.emplace_back();
    }
  }
  return in;
}

// Columns per block of the triangular pair products below: small blocks skip more of the zero triangle
// but run BLAS on thinner panels. 64 is fastest up to d ~ 1k (d = 256: 0.73 ms against 1.27 ms for one
// block, one thread), 256 above (d = 2048).
inline int64_t pair_tile(int64_t d) { return d <= 1024 ? 64 : kProductTile; }

// C = a^T b. When both are square lower-triangular, row block i of C needs only rows from i on of a and
// b (the rows above are zero in a's block column): about half the flops of one GEMM.
inline at::Tensor cross_product(const at::Tensor& a, const at::Tensor& b, bool both_lower) {
  const int64_t d = a.size(0), tile = pair_tile(d);
  if (!both_lower || d <= tile) return at::mm(a.t(), b);
  at::Tensor c = at::empty({d, d}, a.options());
  for (int64_t i = 0; i < d; i += tile) {
    const int64_t t = std::min(tile, d - i);
    at::Tensor rows = c.narrow(0, i, t);
    at::mm_out(rows, a.narrow(0, i, d - i).narrow(1, i, t).t(), b.narrow(0, i, d - i));
  }
  return c;
}

// The lower block triangle of M = l^T s l for a square lower-triangular l and s [d, d]: W = s l needs
// rows from j on of l's column block j; row block i of M needs rows from i on of l and W's first i + t
// columns. About a third of the flops of the two GEMMs of C = l^T l_s, C C^T.
inline at::Tensor congruence_lower(const at::Tensor& l, const at::Tensor& s) {
  const int64_t d = l.size(0), tile = pair_tile(d);
  at::Tensor w = at::empty({d, d}, l.options());
  for (int64_t j = 0; j < d; j += tile) {
    const int64_t t = std::min(tile, d - j);
    at::Tensor cols = w.narrow(1, j, t);
    at::mm_out(cols, s.narrow(1, j, d - j), l.narrow(0, j, d - j).narrow(1, j, t));
  }
  at::Tensor m = at::zeros({d, d}, l.options());
  for (int64_t i = 0; i < d; i += tile) {
    const int64_t t = std::min(tile, d - i);
    at::Tensor rows = m.narrow(0, i, t).narrow(1, 0, i + t);
    at::mm_out(rows, l.narrow(0, i, d - i).narrow(1, i, t).t(), w.narrow(0, i, d - i).narrow(1, 0, i + t));
  }
  return m;
}

// tr sqrt(S_i S_j) = sum of singular values of C = L_i^T L_j, since the non-zero eigenvalues of
// S_i S_j are those of C C^T. When the smaller rank exceeds svd_max_rank the cheaper symmetric route
// takes sqrt of the eigenvalues of C C^T (or C^T C; or L_i^T S_j L_i, the same matrix, when both are
// Cholesky factors and S_j is at hand): eigenvalue errors of about r eps lambda_max are amplified by
// sqrt near zero, so its a-posteriori error bound must stay below sym_rtol * (tr S_i + tr S_j),
// the size of FID's other terms, else the SVD decides.
inline double trace_sqrt_pair(const PairInputs& in, int64_t i, int64_t j, double scale, int64_t svd_max_rank,
                              double sym_rtol) {
  const at::Tensor &a = in.factors[i], &b = in.factors[j];
  const bool both_lower = in.lower[i] && in.lower[j];
  const int64_t small = std::min(a.size(1), b.size(1));
  if (small == 0) return 0.0;
  at::Tensor c;
  if (small > svd_max_rank) {
    at::Tensor m;
    bool upper = false;
    if (both_lower && (in.sigmas[j].defined() || in.sigmas[i].defined())) {
      m = in.sigmas[j].defined() ? congruence_lower(a, in.sigmas[j]) : congruence_lower(b, in.sigmas[i]);
    } else {
      // M = g^T g (small x small) with g = C or C^T [big, small]; the eigensolver reads one triangle.
      c = cross_product(a, b, both_lower);
      const at::Tensor g = c.size(0) <= c.size(1) ? c.t() : c;
      upper = use_upper_blocks(g.size(0), small);
      m = at::zeros({small, small}, c.options());
      add_gram(m, g, upper);
    }
    // m is row-major with its lower (upper) triangle set: its transpose is the column-major matrix LAPACK
    // reads, with the other triangle set (saves the eigensolver a transposing copy).
    const at::Tensor lam = at::linalg_eigvalsh(m.t(), upper ? "L" : "U").to(at::kCPU).contiguous();
    // The sum and its error bound in one pass over the r eigenvalues (rounding negatives clamped).
    const double* lp = lam.const_data_ptr<double>();
    const int64_t r = lam.numel();
    double top = 0.0;
    for (int64_t k = 0; k < r; ++k) top = std::max(top, lp[k]);
    const double err = static_cast<double>(small) * std::numeric_limits<double>::epsilon() * top;
    double sum = 0.0, bound = 0.0;
    for (int64_t k = 0; k < r; ++k) {
      const double l = std::max(lp[k], 0.0);
      sum += std::sqrt(l);
      bound += std::sqrt(l + err) - std::sqrt(std::max(l - err, 0.0));
    }
    if (bound <= sym_rtol * scale) return sum;
  }
  if (!c.defined()) c = cross_product(a, b, both_lower);
  return at::linalg_svdvals(c).sum().item<double>();
}

inline void check_pair_options(int64_t svd_max_rank, double sym_rtol) {
  TORCH_CHECK_VALUE(svd_max_rank >= 0, "fid_trace_sqrt_pairs: svd_max_rank must be >= 0, got ", svd_max_rank);
  TORCH_CHECK_VALUE(sym_rtol >= 0.0, "fid_trace_sqrt_pairs: sym_rtol must be >= 0, got ", sym_rtol);
}

// All pairs i < j in row-major order.
inline std::vector<std::pair<int64_t, int64_t>> upper_pairs(int64_t n) {
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) pairs.emplace_back(i, j);
  return pairs;
}

// tr S_i: the diagonal of sigma where given, else ||L_i||_F^2 (one reduction, no temporary).
inline std::vector<double> factor_traces(const PairInputs& in) {
  std::vector<double> tr;
  for (size_t i = 0; i < in.factors.size(); ++i) {
    const double t = in.sigmas[i].defined() ? in.sigmas[i].diagonal().sum().item<double>()
                                            : std::pow(at::linalg_vector_norm(in.factors[i]).item<double>(), 2);
    tr.push_back(t);
  }
  return tr;
}

}  // namespace mednns_fast
