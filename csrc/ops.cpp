// Every schema of the mednns_fast op library, in one place. Kernels live in cpu/<family>.cpp and
// cuda/<family>.cu and register themselves with TORCH_LIBRARY_IMPL.
#include <torch/library.h>

#ifdef MEDNNS_FAST_PYTHON_MODULE
#include <Python.h>
// `import mednns_fast._C` loads this library, which registers the ops; the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
#endif

TORCH_LIBRARY(mednns_fast, m) {
  // ---- mixed operations -------------------------------------------------------------------
  // out = sum_k weights[..., k] * xs[k]; weights is [K] or [B, K] (row b scales sample b).
  m.def("mixed_sum(Tensor[] xs, Tensor weights) -> Tensor");
  // grad_xs[k] = weights[..., k] * grad (only where xs_need_grad[k]; an empty tensor elsewhere),
  // grad_weights[..., k] = <xs[k], grad> (an empty tensor unless weights_need_grad).
  m.def(
      "mixed_sum_backward(Tensor grad, Tensor[] xs, Tensor weights, bool[] xs_need_grad, "
      "bool weights_need_grad) -> (Tensor[], Tensor)");

  // ---- FID statistics and Frechet distances -----------------------------------------------
  // Folds a batch features [n, d] into running statistics of `count` rows: mean [d] and m2 [d, d]
  // (the sum of centred outer products), both float64 (or both float32), updated in place. The batch's
  // own mean and centred products are computed in float64 (two passes over the batch), then merged by
  // Chan's formula. count == 0 starts afresh: mean and m2 are overwritten.
  m.def("feature_stats_update_(Tensor(a!) mean, Tensor(b!) m2, Tensor features, int count) -> ()");
  // T[i, j] = tr sqrt(S_i S_j) for every pair, S_i = factors[i] @ factors[i]^T (factors[i]: [d, r_i]);
  // T[i, i] = tr S_i. float64 [N, N], symmetric. lower[i] says factors[i] is square lower-triangular
  // (a Cholesky factor), whose zero blocks the products skip; sigmas[i] (optional) is S_i itself, which
  // saves work between two Cholesky factors. Per pair: the singular values of factors[i]^T factors[j]
  // when the smaller rank is <= svd_max_rank, else the eigenvalues of its symmetric Gram (kept only when
  // their a-posteriori error bound is below sym_rtol * (tr S_i + tr S_j), else the SVD decides).
  m.def(
      "fid_trace_sqrt_pairs(Tensor[] factors, bool[] lower, Tensor?[] sigmas, int svd_max_rank, "
      "float sym_rtol) -> Tensor");
  // What the covariance checks need from sigma [d, d] in one pass: float64 [3] holding
  // (max |S_ij - S_ji|, max |S_ij|, number of non-finite entries); non-finite entries count as 0 in the maxima.
  m.def("fid_covariance_defects(Tensor sigma) -> Tensor");

  // ---- Jensen-Shannon divergences ---------------------------------------------------------
  // (schemas added by the JS family)
}
