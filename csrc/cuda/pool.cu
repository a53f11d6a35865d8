// CUDA path of max_avg_pool3x3: cuDNN/ATen's pooling kernels (already fast on GPUs; the CPU kernel exists
// because ATen's CPU max pool with indices is slow), with the argmax converted to the op's one-byte window tap.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "pool_common.h"

namespace mednns_fast {
namespace {

// Window origin (top-left input, padding included) of each output along one side: o * stride - 1.
at::Tensor window_origin(int64_t n_out, int64_t stride, const at::TensorOptions& opts) {
  return at::arange(n_out, opts.dtype(at::kLong)) * stride - 1;
}

std::tuple<at::Tensor, at::Tensor> max_avg_pool3x3_cuda(const at::Tensor& x, int64_t stride) {
  const PoolGeometry g = pool_geometry(x, stride);
  const c10::cuda::CUDAGuard guard(x.device());
  if (g.Ho == 0 || g.Wo == 0)
    return {at::empty({g.N, 2 * g.C, g.Ho, g.Wo}, x.options()),
            at::empty({g.N, g.C, g.Ho, g.Wo}, x.options().dtype(at::kByte))};
  auto [mx, flat] = at::max_pool2d_with_indices(x, {3, 3}, {stride, stride}, {1, 1});
  at::Tensor avg = at::avg_pool2d(x, {3, 3}, {stride, stride}, {1, 1}, false, /*count_include_pad=*/false);
  // flat = iy * W + ix  ->  tap (iy - oy*s + 1) * 3 + (ix - ox*s + 1)
  const at::Tensor oy = window_origin(g.Ho, stride, x.options()).view({g.Ho, 1});
  const at::Tensor ox = window_origin(g.Wo, stride, x.options()).view({1, g.Wo});
  const at::Tensor tap = (flat.div(g.W, "floor") - oy) * 3 + (flat.remainder(g.W) - ox);
  return {at::cat({mx, avg}, 1).contiguous(), tap.to(at::kByte)};
}

at::Tensor max_avg_pool3x3_backward_cuda(const at::Tensor& grad, const at::Tensor& argmax,
                                         at::IntArrayRef input_size, int64_t stride) {
  const PoolGeometry g = pool_backward_geometry(grad, argmax, input_size, stride);
  const c10::cuda::CUDAGuard guard(grad.device());
  if (g.Ho == 0 || g.Wo == 0) return at::zeros(input_size, grad.options());
  // ATen's backward kernels read only the input's shape and layout from `self`.
  const at::Tensor like = at::empty(input_size, grad.options());
  const at::Tensor tap = argmax.to(at::kLong);
  const at::Tensor oy = window_origin(g.Ho, stride, grad.options()).view({g.Ho, 1});
  const at::Tensor ox = window_origin(g.Wo, stride, grad.options()).view({1, g.Wo});
  const at::Tensor flat = (tap.div(3, "floor") + oy) * g.W + (tap.remainder(3) + ox);
  at::Tensor gmax = grad.narrow(1, 0, g.C).contiguous(), gavg = grad.narrow(1, g.C, g.C).contiguous();
  return at::max_pool2d_with_indices_backward(gmax, like, {3, 3}, {stride, stride}, {1, 1}, {1, 1}, false, flat) +
         at::avg_pool2d_backward(gavg, like, {3, 3}, {stride, stride}, {1, 1}, false, false, std::nullopt);
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CUDA, m) {
  m.impl("max_avg_pool3x3", &max_avg_pool3x3_cuda);
  m.impl("max_avg_pool3x3_backward", &max_avg_pool3x3_backward_cuda);
}

}  // namespace mednns_fast
