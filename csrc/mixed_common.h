// Host-side argument handling of mixed_sum shared by the CPU and CUDA kernels.
//
// Every input xs[k] is seen as a [rows, inner] matrix whose rows are contiguous but may sit at any
// row stride: that covers contiguous tensors and channel slices of a wider tensor (the fused MixedOp's
// candidates) without a copy. Anything else is made contiguous once.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "checks.h"

namespace mednns_fast {

struct MixedSumLayout {
  std::vector<at::Tensor> xs;        // inputs, contiguous within a row
  std::vector<int64_t> row_stride;   // elements between consecutive rows of xs[k]
  int64_t rows = 1;                  // weights [B, K]: B; weights [K]: 1 (or size(0) when strided)
  int64_t inner = 0;                 // elements per row
  bool per_row_weights = false;      // weights is [B, K]
  int64_t K = 0;
};

// True when dims 1.. of t are laid out contiguously (size-1 dims ignored).
inline bool rows_are_contiguous(const at::Tensor& t) {
  int64_t expected = 1;
  for (int64_t d = t.dim() - 1; d >= 1; --d) {
    if (t.size(d) != 1 && t.stride(d) != expected) return false;
    expected *= t.size(d);
  }
  return true;
}

inline MixedSumLayout mixed_sum_layout(at::TensorList xs, const at::Tensor& weights) {
  TORCH_CHECK_VALUE(!xs.empty(), "mixed_sum: xs must hold at least one tensor");
  check_floating(weights, "mixed_sum: weights");
  TORCH_CHECK_VALUE(weights.dim() == 1 || weights.dim() == 2,
                    "mixed_sum: weights must be [K] or [B, K], got shape ", weights.sizes());
  const int64_t K = static_cast<int64_t>(xs.size());
  TORCH_CHECK_VALUE(weights.size(-1) == K, "mixed_sum: weights has ", weights.size(-1),
                    " entries in its last dim but xs holds ", K, " tensors (K mismatch)");
  const at::Tensor& x0 = xs[0];
  check_floating(x0, "mixed_sum: xs[0]");
  check_same_device(weights, "mixed_sum: weights", x0, "xs[0]");
  for (int64_t k = 1; k < K; ++k) {
    const std::string name = "mixed_sum: xs[" + std::to_string(k) + "]";
    check_same_dtype(xs[k], name.c_str(), x0, "xs[0]");
    check_same_device(xs[k], name.c_str(), x0, "xs[0]");
    TORCH_CHECK_VALUE(xs[k].sizes() == x0.sizes(), name, " has shape ", xs[k].sizes(),
                      " but xs[0] has shape ", x0.sizes(), "; all candidates must have one shape");
  }

  MixedSumLayout layout;
  layout.K = K;
  layout.per_row_weights = weights.dim() == 2;
  if (layout.per_row_weights) {
    TORCH_CHECK_VALUE(x0.dim() >= 1 && x0.size(0) == weights.size(0),
                      "mixed_sum: weights is [B, K] with B=", weights.size(0),
                      " so xs must have B rows in dim 0, got shape ", x0.sizes());
  }
  bool all_contiguous = true;
  for (const auto& x : xs) all_contiguous = all_contiguous && x.is_contiguous();
  // Contiguous inputs with shared weights form one long row: the widest parallel split.
  const bool one_row = !layout.per_row_weights && (all_contiguous || x0.dim() == 0);
  layout.rows = one_row ? 1 : x0.size(0);
  layout.inner = layout.rows == 0 ? 0 : x0.numel() / layout.rows;
  for (const auto& x : xs) {
    at::Tensor v = (one_row || rows_are_contiguous(x)) ? x : x.contiguous();
    layout.row_stride.push_back(one_row ? layout.inner : v.stride(0));
    layout.xs.push_back(v);
  }
  return layout;
}

inline void mixed_sum_backward_check(const at::Tensor& grad, const MixedSumLayout& layout,
                                     const c10::List<bool>& xs_need_grad) {
  const at::Tensor& x0 = layout.xs[0];
  TORCH_CHECK_VALUE(grad.sizes() == x0.sizes(), "mixed_sum_backward: grad has shape ", grad.sizes(),
                    " but xs[0] has shape ", x0.sizes());
  check_same_dtype(grad, "mixed_sum_backward: grad", x0, "xs[0]");
  check_same_device(grad, "mixed_sum_backward: grad", x0, "xs[0]");
  TORCH_CHECK_VALUE(static_cast<int64_t>(xs_need_grad.size()) == layout.K,
                    "mixed_sum_backward: xs_need_grad has ", xs_need_grad.size(), " entries, expected K=",
                    layout.K);
}

// Input-gradient buffers of mixed_sum_backward: one per requested input, undefined elsewhere.
inline std::vector<at::Tensor> mixed_sum_grad_buffers(const at::Tensor& grad, const MixedSumLayout& layout,
                                                      const c10::List<bool>& xs_need_grad) {
  std::vector<at::Tensor> grad_xs;
  for (int64_t k = 0; k < layout.K; ++k)
    grad_xs.push_back(xs_need_grad.get(k) ? at::empty(grad.sizes(), grad.options()) : at::Tensor());
  return grad_xs;
}

// The schema returns tensors, never None: an empty tensor stands for "not requested".
inline void mark_unrequested(std::vector<at::Tensor>& grads, const at::TensorOptions& options) {
  for (auto& t : grads)
    if (!t.defined()) t = at::empty({0}, options);
}

}  // namespace mednns_fast
