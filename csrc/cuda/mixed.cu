// CUDA kernels of mixed_sum. Inputs are passed by value as a pointer table (no device-side table to
// allocate); more than kMaxK candidates are handled in groups that accumulate into the output.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "mixed_common.h"

namespace mednns_fast {
namespace {

constexpr int kMaxK = 16;
constexpr int kThreads = 256;

// No host sync on the hot path: NaN/inf weights trip an asynchronous device assert (the error surfaces at
// the next synchronisation). mf.ops.set_debug_checks(True) makes the Python wrapper check at once instead.
void assert_finite_async(const at::Tensor& t, const char* message) {
  at::_assert_async(at::isfinite(t).all(), message);
}

template <typename scalar_t>
struct InputTable {
  const scalar_t* x[kMaxK];
  int64_t row_stride[kMaxK];
};

// One candidate group [k0, k0 + K) of the weighted sum; later groups add to the output.
template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(InputTable<scalar_t> in, int K, const acc_t* __restrict__ w, int64_t w_row_stride,
                               int64_t k0, scalar_t* __restrict__ out, int64_t rows,
                               int64_t inner, bool accumulate) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const acc_t* wr = w + r * w_row_stride + k0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < inner;
         i += (int64_t)gridDim.x * blockDim.x) {
      acc_t acc = accumulate ? static_cast<acc_t>(out[r * inner + i]) : acc_t(0);
#pragma unroll
      for (int k = 0; k < kMaxK; ++k) {
        if (k < K) {
          const acc_t wk = wr[k];
          if (wk != acc_t(0)) acc += wk * static_cast<acc_t>(in.x[k][r * in.row_stride[k] + i]);
        }
      }
      out[r * inner + i] = static_cast<scalar_t>(acc);
    }
  }
}

// Input gradients and per-block partial dot products <x_k, grad> in one pass over grad.
template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(InputTable<scalar_t> in, InputTable<scalar_t> gx, int K,
                                const acc_t* __restrict__ w, int64_t w_row_stride, int64_t k0,
                                const scalar_t* __restrict__ grad, int64_t rows, int64_t inner,
                                bool weights_need_grad, acc_t* __restrict__ partial /* [rows, gridDim.x, K] */) {
  __shared__ acc_t warp_sums[kMaxK][kThreads / 32];
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const acc_t* wr = w + r * w_row_stride + k0;
    acc_t dot[kMaxK];
#pragma unroll
    for (int k = 0; k < kMaxK; ++k) dot[k] = acc_t(0);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < inner;
         i += (int64_t)gridDim.x * blockDim.x) {
      const acc_t g = static_cast<acc_t>(grad[r * inner + i]);
#pragma unroll
      for (int k = 0; k < kMaxK; ++k) {
        if (k < K) {
          if (gx.x[k]) const_cast<scalar_t*>(gx.x[k])[r * inner + i] = static_cast<scalar_t>(wr[k] * g);
          if (weights_need_grad) dot[k] += static_cast<acc_t>(in.x[k][r * in.row_stride[k] + i]) * g;
        }
      }
    }
    if (!weights_need_grad) continue;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
    for (int k = 0; k < kMaxK; ++k) {
      if (k < K) {
        acc_t v = dot[k];
        for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffff, v, off);
        if (lane == 0) warp_sums[k][warp] = v;
      }
    }
    __syncthreads();
    if (threadIdx.x < K) {
      acc_t s = 0;
      for (int j = 0; j < kThreads / 32; ++j) s += warp_sums[threadIdx.x][j];
      partial[(r * gridDim.x + blockIdx.x) * K + threadIdx.x] = s;
    }
    __syncthreads();
  }
}

dim3 grid_for(int64_t rows, int64_t inner) {
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t rows_y = std::min<int64_t>(std::max<int64_t>(rows, 1), 65535);
  // Enough blocks to fill every SM a few times, spread over rows first.
  const int64_t want = std::max<int64_t>(1, (int64_t)sms * 8 / rows_y);
  const int64_t gx = std::min<int64_t>(want, std::max<int64_t>(1, (inner + kThreads - 1) / kThreads));
  return dim3(static_cast<unsigned>(gx), static_cast<unsigned>(rows_y));
}

template <typename scalar_t>
InputTable<scalar_t> table(const std::vector<at::Tensor>& ts, const std::vector<int64_t>& strides, int64_t k0,
                           int K) {
  InputTable<scalar_t> t{};
  for (int k = 0; k < K; ++k) {
    t.x[k] = ts[k0 + k].defined() ? ts[k0 + k].const_data_ptr<scalar_t>() : nullptr;
    t.row_stride[k] = strides.empty() ? 0 : strides[k0 + k];
  }
  return t;
}

at::Tensor mixed_sum_cuda(at::TensorList xs, const at::Tensor& weights) {
  const MixedSumLayout l = mixed_sum_layout(xs, weights);
  const c10::cuda::CUDAGuard guard(l.xs[0].device());
  assert_finite_async(weights, "mixed_sum: weights must be finite but contains NaN or infinity");
  at::Tensor out = at::empty(l.xs[0].sizes(), l.xs[0].options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const dim3 grid = grid_for(l.rows, l.inner);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, out.scalar_type(), "mixed_sum_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor w = weights.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    const int64_t w_row_stride = l.per_row_weights ? l.K : 0;
    for (int64_t k0 = 0; k0 < l.K; k0 += kMaxK) {
      const int K = static_cast<int>(std::min<int64_t>(kMaxK, l.K - k0));
      forward_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
          table<scalar_t>(l.xs, l.row_stride, k0, K), K, w.const_data_ptr<acc_t>(), w_row_stride, k0,
          out.data_ptr<scalar_t>(), l.rows, l.inner, k0 > 0);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return out;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> mixed_sum_backward_cuda(
    const at::Tensor& grad, at::TensorList xs, const at::Tensor& weights,
    const c10::List<bool>& xs_need_grad, bool weights_need_grad) {
  const MixedSumLayout l = mixed_sum_layout(xs, weights);
  mixed_sum_backward_check(grad, l, xs_need_grad);
  const c10::cuda::CUDAGuard guard(grad.device());
  assert_finite_async(weights, "mixed_sum: weights must be finite but contains NaN or infinity");
  const at::Tensor g = grad.contiguous();
  std::vector<at::Tensor> grad_xs = mixed_sum_grad_buffers(g, l, xs_need_grad);
  at::Tensor grad_w = at::empty({0}, weights.options());
  const dim3 grid = grid_for(l.rows, l.inner);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "mixed_sum_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor w = weights.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    const int64_t w_row_stride = l.per_row_weights ? l.K : 0;
    std::vector<at::Tensor> partials;
    for (int64_t k0 = 0; k0 < l.K; k0 += kMaxK) {
      const int K = static_cast<int>(std::min<int64_t>(kMaxK, l.K - k0));
      at::Tensor partial = at::zeros({l.rows, (int64_t)grid.x, K}, w.options());
      backward_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
          table<scalar_t>(l.xs, l.row_stride, k0, K), table<scalar_t>(grad_xs, {}, k0, K), K,
          w.const_data_ptr<acc_t>(), w_row_stride, k0, g.const_data_ptr<scalar_t>(), l.rows, l.inner,
          weights_need_grad, partial.data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      partials.push_back(partial);
    }
    if (weights_need_grad) {
      // [rows, blocks, K] -> [rows, K], reduced in float64 as on the CPU and Triton paths
      at::Tensor per_row = at::cat(partials, 2).to(at::kDouble).sum(1);
      grad_w = (l.per_row_weights ? per_row : per_row.sum(0)).to(weights.scalar_type()).view(weights.sizes());
    }
  });
  mark_unrequested(grad_xs, g.options());
  return {grad_xs, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CUDA, m) {
  m.impl("mixed_sum", &mixed_sum_cuda);
  m.impl("mixed_sum_backward", &mixed_sum_backward_cuda);
}

}  // namespace mednns_fast
