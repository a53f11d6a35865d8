// CUDA path of multi_depthwise_conv2d: one cuDNN depthwise convolution per candidate (cuDNN's depthwise
// kernels are already fast on GPUs; the CPU kernel exists because ATen's CPU depthwise backward is slow).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "depthwise_common.h"

namespace mednns_fast {
namespace {

at::Tensor candidate_input(const at::Tensor& x, const DepthwiseGeometry& g, int64_t j) {
  return g.shared_input ? x : x.narrow(1, j * g.C, g.C);
}

at::Tensor multi_depthwise_conv2d_cuda(const at::Tensor& x, at::TensorList weights, at::IntArrayRef dilations,
                                       int64_t stride, bool shared_input) {
  const DepthwiseGeometry g = depthwise_geometry(x, weights, dilations, stride, shared_input);
  const c10::cuda::CUDAGuard guard(x.device());
  std::vector<at::Tensor> outs;
  for (int64_t j = 0; j < g.J; ++j)
    outs.push_back(at::conv2d(candidate_input(x, g, j), weights[j], {}, {stride, stride}, {g.pad[j], g.pad[j]},
                              {g.dilation[j], g.dilation[j]}, g.C));
  return at::cat(outs, 1);
}

std::tuple<at::Tensor, std::vector<at::Tensor>> multi_depthwise_conv2d_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, at::TensorList weights, at::IntArrayRef dilations,
    int64_t stride, bool shared_input, bool x_needs_grad, bool weights_need_grad) {
  const DepthwiseGeometry g = depthwise_geometry(x, weights, dilations, stride, shared_input);
  const c10::cuda::CUDAGuard guard(x.device());
  std::vector<at::Tensor> grad_xs, grad_ws;
  for (int64_t j = 0; j < g.J; ++j) {
    auto [gx, gw, gb] = at::convolution_backward(
        grad.narrow(1, j * g.C, g.C).contiguous(), candidate_input(x, g, j), weights[j], std::nullopt,
        {stride, stride}, {g.pad[j], g.pad[j]}, {g.dilation[j], g.dilation[j]}, false, {0, 0}, g.C,
        {x_needs_grad, weights_need_grad, false});
    if (x_needs_grad) grad_xs.push_back(gx);
    grad_ws.push_back(weights_need_grad ? gw : at::empty({0}, x.options()));
  }
  at::Tensor grad_x = at::empty({0}, x.options());
  if (x_needs_grad) grad_x = shared_input ? at::stack(grad_xs).sum(0) : at::cat(grad_xs, 1);
  return {grad_x, grad_ws};
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CUDA, m) {
  m.impl("multi_depthwise_conv2d", &multi_depthwise_conv2d_cuda);
  m.impl("multi_depthwise_conv2d_backward", &multi_depthwise_conv2d_backward_cuda);
}

}  // namespace mednns_fast
