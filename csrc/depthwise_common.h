// Host-side argument handling of multi_depthwise_conv2d shared by the CPU and CUDA kernels.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <string>
#include <vector>

#include "checks.h"

namespace mednns_fast {

// The kernels zero-pad each input plane once; a plane of more elements than this (huge dilations) is
// refused instead of overflowing or exhausting memory. Python checks the same (ops/_checks.py).
constexpr int64_t kMaxPaddedPlane = int64_t{1} << 31;

struct DepthwiseGeometry {
  int64_t N, C, J, H, W, Ho, Wo, stride, max_pad;
  bool shared_input;
  std::vector<int64_t> kernel, dilation, pad;
  int64_t in_channels() const { return shared_input ? C : J * C; }
};

inline DepthwiseGeometry depthwise_geometry(const at::Tensor& x, at::TensorList weights,
                                            at::IntArrayRef dilations, int64_t stride, bool shared_input) {
  check_floating(x, "multi_depthwise_conv2d: x");
  TORCH_CHECK_VALUE(x.dim() == 4, "multi_depthwise_conv2d: x must be [N, C, H, W], got shape ", x.sizes());
  TORCH_CHECK_VALUE(!weights.empty(), "multi_depthwise_conv2d: weights must hold at least one tensor");
  TORCH_CHECK_VALUE(dilations.size() == weights.size(), "multi_depthwise_conv2d: dilations has ",
                    dilations.size(), " entries but weights holds ", weights.size());
  TORCH_CHECK_VALUE(stride >= 1, "multi_depthwise_conv2d: stride must be >= 1, got ", stride);
  DepthwiseGeometry g;
  g.J = static_cast<int64_t>(weights.size());
  g.C = weights[0].size(0);
  g.shared_input = shared_input;
  g.stride = stride;
  g.max_pad = 0;
  for (int64_t j = 0; j < g.J; ++j) {
    const std::string name = "multi_depthwise_conv2d: weights[" + std::to_string(j) + "]";
    const at::Tensor& w = weights[j];
    check_same_dtype(w, name.c_str(), x, "x");
    check_same_device(w, name.c_str(), x, "x");
    TORCH_CHECK_VALUE(w.dim() == 4 && w.size(0) == g.C && w.size(1) == 1 && w.size(2) == w.size(3) &&
                          w.size(2) % 2 == 1,
                      name, " must be [C, 1, k, k] with C=", g.C, " and k odd, got shape ", w.sizes());
    TORCH_CHECK_VALUE(dilations[j] >= 1 && dilations[j] <= kMaxPaddedPlane,
                      "multi_depthwise_conv2d: dilations[", j, "] must be in [1, 2^31], got ", dilations[j]);
    g.kernel.push_back(w.size(2));
    g.dilation.push_back(dilations[j]);
    g.pad.push_back(dilations[j] * (w.size(2) - 1) / 2);
    g.max_pad = std::max(g.max_pad, g.pad.back());
  }
  g.N = x.size(0);
  g.H = x.size(2);
  g.W = x.size(3);
  TORCH_CHECK_VALUE(x.size(1) == g.in_channels(), "multi_depthwise_conv2d: x has ", x.size(1),
                    " channels, expected ", g.in_channels(),
                    shared_input ? " (C, shared by every candidate)" : " (J*C, one C-slice per candidate)");
  // Padded plane size in double (pad <= 2^61 here, so the int64 sides do not overflow).
  const double plane = static_cast<double>(g.H + 2 * g.max_pad) * static_cast<double>(g.W + 2 * g.max_pad);
  TORCH_CHECK_VALUE(plane <= static_cast<double>(kMaxPaddedPlane),
                    "multi_depthwise_conv2d: dilations too large for x of shape ", x.sizes(),
                    ": the zero-padded plane would hold ", plane, " elements (at most 2^31); padding is ",
                    g.max_pad);
  // floor((H - 1) / stride) + 1, and 0 for an empty side (C++ division truncates towards zero).
  g.Ho = g.H == 0 ? 0 : (g.H - 1) / stride + 1;
  g.Wo = g.W == 0 ? 0 : (g.W - 1) / stride + 1;
  return g;
}

}  // namespace mednns_fast
