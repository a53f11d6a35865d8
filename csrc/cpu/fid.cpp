// CPU kernels of the FID family: the batch moments of the streaming statistics update (float64 column
// sums and centring, the d x d product left to BLAS) and the pair loop of fid_matrix, whose pairs run
// in parallel (one LAPACK call per pair on each thread) rather than one after another.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "fid_common.h"

namespace mednns_fast {
namespace {

// The batch is summed in a fixed number of row blocks (independent of the thread count, so the result
// is too), each into its own float64 row, then the blocks are added in order.
constexpr int64_t kMaxRowBlocks = 64;
constexpr int64_t kMinRowsPerBlock = 256;

struct CpuStatsKernels {
  static at::Tensor column_mean(const at::Tensor& x) {
    const int64_t n = x.size(0), d = x.size(1), row_stride = x.stride(0);
    const int64_t blocks = std::clamp<int64_t>(n / kMinRowsPerBlock, 1, kMaxRowBlocks);
    const int64_t per_block = (n + blocks - 1) / blocks;
    at::Tensor partial = at::zeros({blocks, d}, x.options().dtype(at::kDouble));
    double* pp = partial.data_ptr<double>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "fid_column_mean", [&] {
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          double* acc = pp + b * d;
          const int64_t end = std::min(n, (b + 1) * per_block);
          for (int64_t i = b * per_block; i < end; ++i) {
            const scalar_t* row = xp + i * row_stride;
            for (int64_t j = 0; j < d; ++j) acc[j] += static_cast<double>(row[j]);
          }
        }
      });
    });
    at::Tensor mean = partial[0].clone();
    double* mp = mean.data_ptr<double>();
    for (int64_t b = 1; b < blocks; ++b)
      for (int64_t j = 0; j < d; ++j) mp[j] += pp[b * d + j];
    return mean.div_(static_cast<double>(n));
  }

  static void centre(const at::Tensor& x, const at::Tensor& mean, at::Tensor& out) {
    const int64_t n = x.size(0), d = x.size(1), row_stride = x.stride(0);
    const double* mp = mean.const_data_ptr<double>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "fid_centre", [&] {
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "fid_centre_out", [&] {
        using out_t = scalar_t;
        out_t* op = out.data_ptr<out_t>();
        at::parallel_for(0, n, 16, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) {
            const auto* row = xp + i * row_stride;
            out_t* o = op + i * d;
            for (int64_t j = 0; j < d; ++j) o[j] = static_cast<out_t>(static_cast<double>(row[j]) - mp[j]);
          }
        });
      });
    });
  }
};

void feature_stats_update_cpu(at::Tensor& mean, at::Tensor& m2, const at::Tensor& features, int64_t count) {
  TORCH_CHECK_VALUE(features.device().is_cpu(), "feature_stats_update_: CPU kernel called with ",
                    features.device());
  feature_stats_update<CpuStatsKernels>(mean, m2, features, count);
}

// One pass over the upper block triangle, each tile read beside its mirror image (both stay in cache).
constexpr int64_t kCheckTile = 64;
constexpr int64_t kCheckMinParallel = int64_t(1) << 19;

at::Tensor fid_covariance_defects_cpu(const at::Tensor& sigma) {
  check_square(sigma, "fid_covariance_defects: sigma");
  TORCH_CHECK_VALUE(sigma.device().is_cpu(), "fid_covariance_defects: CPU kernel called with ", sigma.device());
  const at::Tensor s = sigma.contiguous();
  const int64_t d = s.size(0), tiles = (d + kCheckTile - 1) / kCheckTile;
  std::vector<double> asym(tiles, 0.0), amax(tiles, 0.0), bad(tiles, 0.0);
  // Threads only where each gets at least kCheckMinParallel entries: a smaller check takes microseconds,
  // less than waking a second thread (and, on a busy machine, far less than waiting for it).
  const int64_t grain = std::max<int64_t>(1, tiles * kCheckMinParallel / std::max<int64_t>(1, d * d));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, s.scalar_type(), "fid_covariance_defects", [&] {
    const scalar_t* p = s.const_data_ptr<scalar_t>();
    at::parallel_for(0, tiles, grain, [&](int64_t t0, int64_t t1) {
      for (int64_t ti = t0; ti < t1; ++ti) {
        double a_sym = 0.0, a_max = 0.0, n_bad = 0.0;
        const int64_t i0 = ti * kCheckTile, i1 = std::min(d, i0 + kCheckTile);
        for (int64_t j0 = i0; j0 < d; j0 += kCheckTile) {
          const int64_t j1 = std::min(d, j0 + kCheckTile);
          for (int64_t i = i0; i < i1; ++i) {
            for (int64_t j = std::max(j0, i); j < j1; ++j) {
              const double a = static_cast<double>(p[i * d + j]), b = static_cast<double>(p[j * d + i]);
              const bool fa = std::isfinite(a), fb = std::isfinite(b);
              n_bad += (fa ? 0.0 : 1.0) + (i != j && !fb ? 1.0 : 0.0);
              const double ua = fa ? a : 0.0, ub = fb ? b : 0.0;
              a_sym = std::max(a_sym, std::abs(ua - ub));
              a_max = std::max(a_max, std::max(std::abs(ua), std::abs(ub)));
            }
          }
        }
        asym[ti] = a_sym;
        amax[ti] = a_max;
        bad[ti] = n_bad;
      }
    });
  });
  double r_sym = 0.0, r_max = 0.0, r_bad = 0.0;
  for (int64_t t = 0; t < tiles; ++t) {
    r_sym = std::max(r_sym, asym[t]);
    r_max = std::max(r_max, amax[t]);
    r_bad += bad[t];
  }
  return at::tensor(std::vector<double>{r_sym, r_max, r_bad}, at::kDouble);
}

at::Tensor fid_trace_sqrt_pairs_cpu(at::TensorList factors, const c10::List<bool>& lower,
                                     const c10::List<std::optional<at::Tensor>>& sigmas, int64_t svd_max_rank,
                                     double sym_rtol) {
  check_pair_options(svd_max_rank, sym_rtol);
  const PairInputs in = pair_inputs(factors, lower, sigmas);
  TORCH_CHECK_VALUE(in.factors[0].device().is_cpu(), "fid_trace_sqrt_pairs: CPU kernel called with ",
                    in.factors[0].device());
  const int64_t n = static_cast<int64_t>(in.factors.size());
  const std::vector<double> tr = factor_traces(in);
  const auto pairs = upper_pairs(n);
  const int64_t num_pairs = static_cast<int64_t>(pairs.size());
  at::Tensor out = at::zeros({n, n}, at::kDouble);
  double* op = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) op[i * n + i] = tr[i];
  std::atomic<int64_t> next{0};
  auto work = [&](int64_t, int64_t) {
    for (int64_t p = next++; p < num_pairs; p = next++) {
      const auto [i, j] = pairs[p];
      const double t = trace_sqrt_pair(in, i, j, tr[i] + tr[j], svd_max_rank, sym_rtol);
      op[i * n + j] = t;
      op[j * n + i] = t;
    }
  };
  const int64_t threads = at::get_num_threads();
  if (num_pairs < threads || at::in_parallel_region()) {
    // Fewer pairs than threads: one pair at a time, each BLAS/LAPACK call using every thread.
    work(0, 1);
  } else {
    // One pair per thread at a time (BLAS and LAPACK single-threaded inside the region): independent
    // decompositions scale better than a threaded one. Pairs differ in cost (ranks differ, some fall
    // back to the SVD), so each thread takes the next pair left rather than a fixed slice.
    at::parallel_for(0, threads, 1, work);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CPU, m) {
  m.impl("feature_stats_update_", &feature_stats_update_cpu);
  m.impl("fid_trace_sqrt_pairs", &fid_trace_sqrt_pairs_cpu);
  m.impl("fid_covariance_defects", &fid_covariance_defects_cpu);
}

}  // namespace mednns_fast
