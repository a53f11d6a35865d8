// CPU kernels of the FID family: the batch moments of the streaming statistics update (float64 column
// sums and centring, the d x d product left to BLAS) and the pair loop of fid_matrix, whose pairs run
// in parallel (one LAPACK call per pair on each thread) rather than one after another.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
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

at::Tensor fid_trace_sqrt_pairs_cpu(at::TensorList factors, int64_t svd_max_rank, double sym_rtol) {
  check_pair_options(svd_max_rank, sym_rtol);
  const std::vector<at::Tensor> f = pair_factors(factors);
  TORCH_CHECK_VALUE(f[0].device().is_cpu(), "fid_trace_sqrt_pairs: CPU kernel called with ", f[0].device());
  const int64_t n = static_cast<int64_t>(f.size());
  const std::vector<double> tr = factor_traces(f);
  const auto pairs = upper_pairs(n);
  const int64_t num_pairs = static_cast<int64_t>(pairs.size());
  at::Tensor out = at::zeros({n, n}, at::kDouble);
  double* op = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) op[i * n + i] = tr[i];
  // Pairs differ in cost (ranks differ, some fall back to the SVD): each thread takes the next pair
  // left rather than a fixed slice. Inside a parallel region ATen and BLAS calls run single-threaded.
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), num_pairs));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t p = next++; p < num_pairs; p = next++) {
      const auto [i, j] = pairs[p];
      const double t = trace_sqrt_pair(f[i], f[j], tr[i] + tr[j], svd_max_rank, sym_rtol);
      op[i * n + j] = t;
      op[j * n + i] = t;
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CPU, m) {
  m.impl("feature_stats_update_", &feature_stats_update_cpu);
  m.impl("fid_trace_sqrt_pairs", &fid_trace_sqrt_pairs_cpu);
}

}  // namespace mednns_fast
