// CUDA kernels of the FID family: float64 column sums and centring of a feature batch (the d x d
// product goes to cuBLAS through ATen), and the pair loop of fid_matrix (cuBLAS / cuSOLVER per pair).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "fid_common.h"

namespace mednns_fast {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxRowBlocks = 4096;

// Half types convert through float, float64 stays as it is.
template <typename scalar_t>
__device__ __forceinline__ double to_double(scalar_t v) {
  return static_cast<double>(static_cast<float>(v));
}
template <>
__device__ __forceinline__ double to_double<double>(double v) {
  return v;
}

// partial[b, j] = sum of column j over row block b, in float64. Threads of a warp read one row's
// consecutive columns (coalesced); row blocks give the parallelism when d is small.
template <typename scalar_t>
__global__ void column_partial_sums(const scalar_t* __restrict__ x, int64_t n, int64_t d, int64_t row_stride,
                                    int64_t rows_per_block, double* __restrict__ partial) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= d) return;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < n ? r0 + rows_per_block : n;
  double acc = 0.0;
  for (int64_t i = r0; i < r1; ++i) acc += to_double(x[i * row_stride + j]);
  partial[blockIdx.y * d + j] = acc;
}

// out[i, j] = x[i, j] - mean[j] in float64, stored as out_t (out is contiguous [n, d]).
template <typename scalar_t, typename out_t>
__global__ void centre_rows(const scalar_t* __restrict__ x, int64_t n, int64_t d, int64_t row_stride,
                            const double* __restrict__ mean, out_t* __restrict__ out) {
  const int64_t total = n * d;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += step) {
    const int64_t i = k / d, j = k - i * d;
    out[k] = static_cast<out_t>(to_double(x[i * row_stride + j]) - mean[j]);
  }
}

struct CudaStatsKernels {
  static at::Tensor column_mean(const at::Tensor& x) {
    const int64_t n = x.size(0), d = x.size(1);
    const int64_t row_blocks = std::min<int64_t>(kMaxRowBlocks, (n + 255) / 256);
    const int64_t rows_per_block = (n + row_blocks - 1) / row_blocks;
    at::Tensor partial = at::empty({row_blocks, d}, x.options().dtype(at::kDouble));
    const dim3 grid(static_cast<unsigned>((d + kThreads - 1) / kThreads), static_cast<unsigned>(row_blocks));
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "fid_column_mean_cuda", [&] {
      column_partial_sums<scalar_t><<<grid, kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), n, d, x.stride(0), rows_per_block, partial.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    // Row blocks are added by a fixed-order reduction: the mean does not depend on scheduling.
    return partial.sum(0).div_(static_cast<double>(n));
  }

  static void centre(const at::Tensor& x, const at::Tensor& mean, at::Tensor& out) {
    const int64_t n = x.size(0), d = x.size(1);
    const int64_t blocks = std::min<int64_t>((n * d + kThreads - 1) / kThreads, 65535);
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "fid_centre_cuda", [&] {
      using in_t = scalar_t;
      AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "fid_centre_out_cuda", [&] {
        centre_rows<in_t, scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
            x.const_data_ptr<in_t>(), n, d, x.stride(0), mean.const_data_ptr<double>(), out.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
};

void feature_stats_update_cuda(at::Tensor& mean, at::Tensor& m2, const at::Tensor& features, int64_t count) {
  TORCH_CHECK_VALUE(features.is_cuda(), "feature_stats_update_: CUDA kernel called with ", features.device());
  const c10::cuda::CUDAGuard guard(features.device());
  feature_stats_update<CudaStatsKernels>(mean, m2, features, count);
}

// On the GPU each pair's products and decompositions are already parallel: pairs run in turn.
at::Tensor fid_trace_sqrt_pairs_cuda(at::TensorList factors, const c10::List<bool>& lower,
                                     const c10::List<std::optional<at::Tensor>>& sigmas, int64_t svd_max_rank,
                                     double sym_rtol) {
  check_pair_options(svd_max_rank, sym_rtol);
  const PairInputs in = pair_inputs(factors, lower, sigmas);
  TORCH_CHECK_VALUE(in.factors[0].is_cuda(), "fid_trace_sqrt_pairs: CUDA kernel called with ",
                    in.factors[0].device());
  const c10::cuda::CUDAGuard guard(in.factors[0].device());
  const int64_t n = static_cast<int64_t>(in.factors.size());
  const std::vector<double> tr = factor_traces(in);
  std::vector<double> out(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i) out[i * n + i] = tr[i];
  for (const auto& [i, j] : upper_pairs(n)) {
    const double t = trace_sqrt_pair(in, i, j, tr[i] + tr[j], svd_max_rank, sym_rtol);
    out[i * n + j] = t;
    out[j * n + i] = t;
  }
  return at::tensor(out, at::TensorOptions().dtype(at::kDouble)).view({n, n}).to(in.factors[0].device());
}

// A reduction over d^2 values: ATen's CUDA reductions already run at memory bandwidth.
at::Tensor fid_covariance_defects_cuda(const at::Tensor& sigma) {
  check_square(sigma, "fid_covariance_defects: sigma");
  TORCH_CHECK_VALUE(sigma.is_cuda(), "fid_covariance_defects: CUDA kernel called with ", sigma.device());
  const c10::cuda::CUDAGuard guard(sigma.device());
  return covariance_defects_aten(sigma);
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CUDA, m) {
  m.impl("fid_covariance_defects", &fid_covariance_defects_cuda);
  m.impl("feature_stats_update_", &feature_stats_update_cuda);
  m.impl("fid_trace_sqrt_pairs", &fid_trace_sqrt_pairs_cuda);
}

}  // namespace mednns_fast
