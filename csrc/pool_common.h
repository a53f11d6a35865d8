// Host-side argument handling of max_avg_pool3x3 shared by the CPU and CUDA kernels.
#pragma once

#include <ATen/ATen.h>

#include "checks.h"

namespace mednns_fast {

struct PoolGeometry {
  int64_t N, C, H, W, Ho, Wo, stride;
};

// floor((n - 1) / stride) + 1 (3x3 window, padding 1), and 0 for an empty side.
inline int64_t pooled_side(int64_t n, int64_t stride) { return n == 0 ? 0 : (n - 1) / stride + 1; }

inline PoolGeometry pool_geometry(const at::Tensor& x, int64_t stride) {
  check_floating(x, "max_avg_pool3x3: x");
  TORCH_CHECK_VALUE(x.dim() == 4, "max_avg_pool3x3: x must be [N, C, H, W], got shape ", x.sizes());
  TORCH_CHECK_VALUE(stride >= 1, "max_avg_pool3x3: stride must be >= 1, got ", stride);
  return {x.size(0), x.size(1), x.size(2), x.size(3), pooled_side(x.size(2), stride), pooled_side(x.size(3), stride),
          stride};
}

inline PoolGeometry pool_backward_geometry(const at::Tensor& grad, const at::Tensor& argmax,
                                           at::IntArrayRef input_size, int64_t stride) {
  check_floating(grad, "max_avg_pool3x3_backward: grad");
  TORCH_CHECK_VALUE(input_size.size() == 4, "max_avg_pool3x3_backward: input_size must be [N, C, H, W], got ",
                    input_size);
  TORCH_CHECK_VALUE(stride >= 1, "max_avg_pool3x3_backward: stride must be >= 1, got ", stride);
  const PoolGeometry g{input_size[0], input_size[1], input_size[2], input_size[3],
                       pooled_side(input_size[2], stride), pooled_side(input_size[3], stride), stride};
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == g.N && grad.size(1) == 2 * g.C && grad.size(2) == g.Ho &&
                        grad.size(3) == g.Wo,
                    "max_avg_pool3x3_backward: grad must be [", g.N, ", ", 2 * g.C, ", ", g.Ho, ", ", g.Wo,
                    "], got ", grad.sizes());
  TORCH_CHECK_VALUE(argmax.scalar_type() == at::kByte && argmax.dim() == 4 && argmax.size(0) == g.N &&
                        argmax.size(1) == g.C && argmax.size(2) == g.Ho && argmax.size(3) == g.Wo,
                    "max_avg_pool3x3_backward: argmax must be uint8 [", g.N, ", ", g.C, ", ", g.Ho, ", ", g.Wo,
                    "], got ", argmax.scalar_type(), " ", argmax.sizes());
  check_same_device(argmax, "max_avg_pool3x3_backward: argmax", grad, "grad");
  return g;
}

}  // namespace mednns_fast
