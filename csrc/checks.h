// Input checks shared by every op family and backend: each names the argument and what was expected,
// and raises ValueError (TORCH_CHECK_VALUE) in Python.
#pragma once

#include <ATen/ATen.h>

namespace mednns_fast {

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.defined(), name, " must be a defined tensor");
  TORCH_CHECK_VALUE(at::isFloatingType(t.scalar_type()), name,
                    " must be a floating-point tensor (float32, float64, bfloat16 or float16), got ",
                    t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref,
                              const char* ref_name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, " is on ", t.device(), " but ", ref_name,
                    " is on ", ref.device(), "; move them to one device");
}

inline void check_same_dtype(const at::Tensor& t, const char* name, const at::Tensor& ref,
                             const char* ref_name) {
  TORCH_CHECK_VALUE(t.scalar_type() == ref.scalar_type(), name, " has dtype ", t.scalar_type(), " but ",
                    ref_name, " has dtype ", ref.scalar_type(), "; they must match");
}

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK_VALUE(t.dim() == dim, name, " must be ", dim, "-D, got shape ", t.sizes());
}

// Reads the values: a device sync on CUDA. Use only on small tensors (weights, distributions' rows).
inline void check_finite(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(at::isfinite(t).all().item<bool>(), name,
                    " must be finite but contains NaN or infinity");
}

}  // namespace mednns_fast
