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

  // Depthwise convolutions of several candidates in one pass (the fused MixedOp's first stages).
  // weights[j] is [C, 1, k_j, k_j] (k_j odd), padding d_j * (k_j - 1) / 2 keeps every output one size.
  // shared_input: every candidate reads x [N, C, H, W]; else candidate j reads channels [j*C, (j+1)*C)
  // of x [N, J*C, H, W]. Output [N, J*C, Ho, Wo], candidate-major.
  m.def(
      "multi_depthwise_conv2d(Tensor x, Tensor[] weights, int[] dilations, int stride, bool shared_input) "
      "-> Tensor");
  m.def(
      "multi_depthwise_conv2d_backward(Tensor grad, Tensor x, Tensor[] weights, int[] dilations, int stride, "
      "bool shared_input, bool x_needs_grad, bool weights_need_grad) -> (Tensor, Tensor[])");

  // The DARTS edge's two pools in one pass: out [N, 2C, Ho, Wo] holds the 3x3 max pool (channels [0, C)) and
  // the 3x3 average pool over each window's valid inputs (channels [C, 2C)) of x [N, C, H, W], padding 1,
  // Ho = (H - 1) / stride + 1; argmax [N, C, Ho, Wo] (uint8) is the max's tap in its window, ky * 3 + kx
  // (ATen's choice: the first largest value, or the last NaN).
  m.def("max_avg_pool3x3(Tensor x, int stride) -> (Tensor, Tensor)");
  // grad_x [input_size] from grad [N, 2C, Ho, Wo] (both pools' output gradients) and the forward's argmax.
  m.def("max_avg_pool3x3_backward(Tensor grad, Tensor argmax, SymInt[] input_size, int stride) -> Tensor");

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
  // Natural log, the divergence (not its square root), 0 log 0 = 0, clamped to [0, ln 2]. With
  // from_logits the rows are softmaxed inside the kernel (a -inf logit is a probability of 0).
  // out[r] = JS(p[r], q[r]); p and q are [rows, K].
  m.def("js_divergence(Tensor p, Tensor q, bool from_logits=False) -> Tensor");
  // (grad_p, grad_q) for grad [rows]; an empty tensor where not requested.
  m.def(
      "js_divergence_backward(Tensor grad, Tensor p, Tensor q, bool from_logits, bool p_needs_grad, "
      "bool q_needs_grad) -> (Tensor, Tensor)");
  // out[i, j] = JS(p[i], q[j]); p [N, K], q [M, K].
  m.def("js_pairwise(Tensor p, Tensor q) -> Tensor");
  m.def(
      "js_pairwise_backward(Tensor grad, Tensor p, Tensor q, bool p_needs_grad, bool q_needs_grad) "
      "-> (Tensor, Tensor)");
  // out[t, e] = JS(P[t, e], mean(P[t - window : t, e])), +inf for t < window; history [T, E, K].
  m.def("js_stability(Tensor history, int window, bool from_logits=True) -> Tensor");
  m.def("js_stability_backward(Tensor grad, Tensor history, int window, bool from_logits) -> Tensor");
}
