// CUDA kernels of the Jensen-Shannon family. The per-row maths (jsd_common.h) is shared with the CPU
// kernels; js_pairwise is a shared-memory tiled kernel (4 x 4 outputs per thread, K in chunks).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>

#include "jsd_common.h"

namespace mednns_fast {
namespace {

using jsd::Row;

constexpr int kThreads = 256;

unsigned int blocks_for(int64_t n) { return static_cast<unsigned int>((n + kThreads - 1) / kThreads); }

cudaStream_t stream() { return at::cuda::getCurrentCUDAStream(); }

// ---- js_divergence: one thread per row ----------------------------------------------------------

template <typename scalar_t, typename acc_t>
__global__ void js_divergence_kernel(const scalar_t* __restrict__ p, const scalar_t* __restrict__ q,
                                     scalar_t* __restrict__ out, int64_t rows, int64_t K, bool logits) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const Row<acc_t, scalar_t> pr(p + r * K, K, 1, logits), qr(q + r * K, K, 1, logits);
  out[r] = static_cast<scalar_t>(jsd::row_js<acc_t>(pr, qr, K));
}

template <typename scalar_t, typename acc_t>
__global__ void js_divergence_backward_kernel(const scalar_t* __restrict__ grad,
                                              const scalar_t* __restrict__ p, const scalar_t* __restrict__ q,
                                              scalar_t* gp, scalar_t* gq, int64_t rows, int64_t K,
                                              bool logits) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const Row<acc_t, scalar_t> pr(p + r * K, K, 1, logits), qr(q + r * K, K, 1, logits);
  jsd::row_js_backward(static_cast<acc_t>(grad[r]), pr, qr, K, gp ? gp + r * K : nullptr, 1,
                       gq ? gq + r * K : nullptr, 1);
}

at::Tensor js_divergence_cuda(const at::Tensor& p_in, const at::Tensor& q_in, bool from_logits) {
  jsd::check_pair(p_in, q_in, "js_divergence", /*same_rows=*/true, from_logits);
  const c10::cuda::CUDAGuard guard(p_in.device());
  const at::Tensor p = p_in.contiguous(), q = q_in.contiguous();
  const int64_t rows = p.size(0), K = p.size(1);
  at::Tensor out = at::empty({rows}, p.options());
  if (rows == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, p.scalar_type(), "js_divergence_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    js_divergence_kernel<scalar_t, acc_t><<<blocks_for(rows), kThreads, 0, stream()>>>(
        p.const_data_ptr<scalar_t>(), q.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), rows, K,
        from_logits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> js_divergence_backward_cuda(const at::Tensor& grad, const at::Tensor& p_in,
                                                              const at::Tensor& q_in, bool from_logits,
                                                              bool p_needs_grad, bool q_needs_grad) {
  jsd::check_pair(p_in, q_in, "js_divergence_backward", /*same_rows=*/true, from_logits);
  jsd::check_grad(grad, "js_divergence_backward", p_in, {p_in.size(0)});
  const c10::cuda::CUDAGuard guard(p_in.device());
  const at::Tensor p = p_in.contiguous(), q = q_in.contiguous(), g = grad.contiguous();
  const int64_t rows = p.size(0), K = p.size(1);
  at::Tensor gp = p_needs_grad ? at::empty_like(p) : at::empty({0}, p.options());
  at::Tensor gq = q_needs_grad ? at::empty_like(q) : at::empty({0}, q.options());
  if (rows == 0 || !(p_needs_grad || q_needs_grad)) return {gp, gq};
  const auto type = p.scalar_type();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, type, "js_divergence_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    js_divergence_backward_kernel<scalar_t, acc_t><<<blocks_for(rows), kThreads, 0, stream()>>>(
        g.const_data_ptr<scalar_t>(), p.const_data_ptr<scalar_t>(), q.const_data_ptr<scalar_t>(),
        p_needs_grad ? gp.data_ptr<scalar_t>() : nullptr, q_needs_grad ? gq.data_ptr<scalar_t>() : nullptr,
        rows, K, from_logits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {gp, gq};
}

// ---- js_pairwise: JS(p_i, q_j) = a_i + b_j - 1/2 sum_k s log s, s = p_ik + q_jk ----------------

constexpr int kTile = 64;        // outputs per block side
constexpr int kSide = 16;        // threads per block side: each thread owns kTile / kSide = 4 rows x 4 cols
constexpr int kMicro = kTile / kSide;
constexpr int kChunk = 16;       // entries of K staged in shared memory at a time

template <typename T>
__global__ void row_constants_kernel(const T* __restrict__ x, T* __restrict__ c, int64_t n, int64_t K) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < n) c[r] = jsd::pairwise_row_constant<T>(x + r * K, K);
}

template <typename T>
__global__ void pairwise_kernel(const T* __restrict__ p, const T* __restrict__ q, const T* __restrict__ a,
                                const T* __restrict__ b, T* __restrict__ out, int64_t N, int64_t M,
                                int64_t K) {
  // Transposed tiles ([k][row]): a warp reads consecutive rows of one k, no bank conflicts.
  __shared__ T ps[kChunk][kTile + 1];
  __shared__ T qs[kChunk][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kSide + tx;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kTile, j0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const T tiny = std::numeric_limits<T>::min();
  T acc[kMicro][kMicro];
#pragma unroll
  for (int u = 0; u < kMicro; ++u)
#pragma unroll
    for (int v = 0; v < kMicro; ++v) acc[u][v] = T(0);
  for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
    for (int idx = tid; idx < kTile * kChunk; idx += kSide * kSide) {
      const int r = idx / kChunk, c = idx % kChunk;
      const int64_t i = i0 + r, j = j0 + r, k = k0 + c;
      ps[c][r] = (i < N && k < K) ? p[i * K + k] : T(0);
      qs[c][r] = (j < M && k < K) ? q[j * K + k] : T(0);
    }
    __syncthreads();
    const int kc = K - k0 < kChunk ? static_cast<int>(K - k0) : kChunk;
    for (int c = 0; c < kc; ++c) {
      T pv[kMicro], qv[kMicro];
#pragma unroll
      for (int u = 0; u < kMicro; ++u) {
        pv[u] = ps[c][ty + kSide * u];
        qv[u] = qs[c][tx + kSide * u];
      }
#pragma unroll
      for (int u = 0; u < kMicro; ++u)
#pragma unroll
        for (int v = 0; v < kMicro; ++v) {
          const T s = pv[u] + qv[v];
          acc[u][v] += s * jsd::log_(s + tiny);  // guarded: 0 log 0 = 0
        }
    }
    __syncthreads();
  }
#pragma unroll
  for (int u = 0; u < kMicro; ++u) {
    const int64_t i = i0 + ty + kSide * u;
    if (i >= N) continue;
#pragma unroll
    for (int v = 0; v < kMicro; ++v) {
      const int64_t j = j0 + tx + kSide * v;
      if (j < M) out[i * M + j] = jsd::clamp_js(a[i] + b[j] - T(0.5) * acc[u][v]);
    }
  }
}

// grad_x[i, k] = 1/2 ((ln2 + log x_ik) G_i - sum_j g_ij log(x_ik + y_jk)): one thread per (i, k); the
// threads of a warp share i, so g's entries are broadcast and y's rows read contiguously.
template <typename T>
__global__ void side_grad_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ g,
                                 const T* __restrict__ G, T* __restrict__ out, int64_t n, int64_t m,
                                 int64_t K) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= n * K) return;
  const int64_t i = idx / K, k = idx % K;
  const T xv = x[idx], tiny = std::numeric_limits<T>::min();
  T S = T(0);
  for (int64_t j = 0; j < m; ++j) S += g[i * m + j] * jsd::log_(xv + y[j * K + k] + tiny);
  out[idx] = jsd::pairwise_side_grad<T>(xv, G[i], S);
}

at::ScalarType compute_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor js_pairwise_cuda(const at::Tensor& p_in, const at::Tensor& q_in) {
  jsd::check_pair(p_in, q_in, "js_pairwise", /*same_rows=*/false, /*from_logits=*/false);
  const c10::cuda::CUDAGuard guard(p_in.device());
  const at::ScalarType ct = compute_type(p_in);
  const at::Tensor p = p_in.to(ct).contiguous(), q = q_in.to(ct).contiguous();
  const int64_t N = p.size(0), M = q.size(0), K = p.size(1);
  at::Tensor out = at::empty({N, M}, p.options());
  if (out.numel() == 0) return out.to(p_in.scalar_type());
  at::Tensor a = at::empty({N}, p.options()), b = at::empty({M}, p.options());
  AT_DISPATCH_FLOATING_TYPES(ct, "js_pairwise_cuda", [&] {
    row_constants_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream()>>>(
        p.const_data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), N, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    row_constants_kernel<scalar_t><<<blocks_for(M), kThreads, 0, stream()>>>(
        q.const_data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), M, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const dim3 grid(static_cast<unsigned int>((M + kTile - 1) / kTile),
                    static_cast<unsigned int>((N + kTile - 1) / kTile));
    pairwise_kernel<scalar_t><<<grid, dim3(kSide, kSide), 0, stream()>>>(
        p.const_data_ptr<scalar_t>(), q.const_data_ptr<scalar_t>(), a.const_data_ptr<scalar_t>(),
        b.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), N, M, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out.to(p_in.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> js_pairwise_backward_cuda(const at::Tensor& grad, const at::Tensor& p_in,
                                                            const at::Tensor& q_in, bool p_needs_grad,
                                                            bool q_needs_grad) {
  jsd::check_pair(p_in, q_in, "js_pairwise_backward", /*same_rows=*/false, /*from_logits=*/false);
  jsd::check_grad(grad, "js_pairwise_backward", p_in, {p_in.size(0), q_in.size(0)});
  const c10::cuda::CUDAGuard guard(p_in.device());
  const at::ScalarType ct = compute_type(p_in);
  const at::Tensor p = p_in.to(ct).contiguous(), q = q_in.to(ct).contiguous();
  const at::Tensor g = grad.to(ct).contiguous();
  auto run = [&](const at::Tensor& x, const at::Tensor& y, const at::Tensor& gx) {
    const int64_t n = x.size(0), m = y.size(0), K = x.size(1);
    at::Tensor out = at::empty_like(x);
    if (out.numel() == 0) return out.to(p_in.scalar_type());
    const at::Tensor G = gx.sum(1);
    AT_DISPATCH_FLOATING_TYPES(ct, "js_pairwise_backward_cuda", [&] {
      side_grad_kernel<scalar_t><<<blocks_for(n * K), kThreads, 0, stream()>>>(
          x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(), gx.const_data_ptr<scalar_t>(),
          G.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n, m, K);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out.to(p_in.scalar_type());
  };
  at::Tensor gp = p_needs_grad ? run(p, q, g) : at::empty({0}, p_in.options());
  at::Tensor gq = q_needs_grad ? run(q, p, g.t().contiguous()) : at::empty({0}, q_in.options());
  return {gp, gq};
}

// ---- js_stability: one thread per (epoch, edge) row ----------------------------------------------

template <typename scalar_t, typename acc_t>
__global__ void stability_probs_kernel(const scalar_t* __restrict__ h, acc_t* __restrict__ P, int64_t rows,
                                       int64_t K, bool logits) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < rows) jsd::stability_probs_row<acc_t>(h, P, r, K, logits);
}

template <typename scalar_t, typename acc_t>
__global__ void stability_kernel(const acc_t* __restrict__ P, scalar_t* __restrict__ out, int64_t T,
                                 int64_t E, int64_t K, int64_t window) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < T * E) out[r] = static_cast<scalar_t>(jsd::stability_value(P, r / E, r % E, E, K, window));
}

template <typename scalar_t, typename acc_t>
__global__ void stability_backward_kernel(const scalar_t* __restrict__ g, const acc_t* __restrict__ P,
                                          acc_t* __restrict__ self, acc_t* __restrict__ gmean, int64_t T,
                                          int64_t E, int64_t K, int64_t window) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < T * E)
    jsd::stability_row_backward(static_cast<acc_t>(g[r]), P, self, gmean, r / E, r % E, E, K, window);
}

template <typename scalar_t, typename acc_t>
__global__ void stability_gather_kernel(const acc_t* __restrict__ P, acc_t* __restrict__ self,
                                        const acc_t* __restrict__ gmean, scalar_t* __restrict__ out,
                                        int64_t T, int64_t E, int64_t K, int64_t window, bool logits) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < T * E) jsd::stability_gather_row(P, self, gmean, out, r / E, r % E, T, E, K, window, logits);
}

at::Tensor js_stability_cuda(const at::Tensor& history, int64_t window, bool from_logits) {
  jsd::check_history(history, window, from_logits);
  const c10::cuda::CUDAGuard guard(history.device());
  const at::Tensor h = history.contiguous();
  const int64_t T = h.size(0), E = h.size(1), K = h.size(2), rows = T * E;
  at::Tensor out = at::empty({T, E}, h.options());
  if (rows == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "js_stability_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor P = at::empty({rows, K}, h.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    stability_probs_kernel<scalar_t, acc_t><<<blocks_for(rows), kThreads, 0, stream()>>>(
        h.const_data_ptr<scalar_t>(), P.data_ptr<acc_t>(), rows, K, from_logits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    stability_kernel<scalar_t, acc_t><<<blocks_for(rows), kThreads, 0, stream()>>>(
        P.const_data_ptr<acc_t>(), out.data_ptr<scalar_t>(), T, E, K, window);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor js_stability_backward_cuda(const at::Tensor& grad, const at::Tensor& history, int64_t window,
                                      bool from_logits) {
  jsd::check_history(history, window, from_logits);
  const int64_t T = history.size(0), E = history.size(1), K = history.size(2), rows = T * E;
  jsd::check_grad(grad, "js_stability_backward", history, {T, E});
  const c10::cuda::CUDAGuard guard(history.device());
  const at::Tensor h = history.contiguous(), g = grad.contiguous();
  at::Tensor out = at::empty({T, E, K}, h.options());
  if (rows == 0) return out;
  const auto type = h.scalar_type();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, type, "js_stability_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto acc_options = h.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
    at::Tensor P = at::empty({rows, K}, acc_options);
    at::Tensor self = at::empty({rows, K}, acc_options), gmean = at::empty({rows, K}, acc_options);
    stability_probs_kernel<scalar_t, acc_t><<<blocks_for(rows), kThreads, 0, stream()>>>(
        h.const_data_ptr<scalar_t>(), P.data_ptr<acc_t>(), rows, K, from_logits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    stability_backward_kernel<scalar_t, acc_t><<<blocks_for(rows), kThreads, 0, stream()>>>(
        g.const_data_ptr<scalar_t>(), P.const_data_ptr<acc_t>(), self.data_ptr<acc_t>(),
        gmean.data_ptr<acc_t>(), T, E, K, window);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    stability_gather_kernel<scalar_t, acc_t><<<blocks_for(rows), kThreads, 0, stream()>>>(
        P.const_data_ptr<acc_t>(), self.data_ptr<acc_t>(), gmean.const_data_ptr<acc_t>(),
        out.data_ptr<scalar_t>(), T, E, K, window, from_logits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CUDA, m) {
  m.impl("js_divergence", &js_divergence_cuda);
  m.impl("js_divergence_backward", &js_divergence_backward_cuda);
  m.impl("js_pairwise", &js_pairwise_cuda);
  m.impl("js_pairwise_backward", &js_pairwise_backward_cuda);
  m.impl("js_stability", &js_stability_cuda);
  m.impl("js_stability_backward", &js_stability_backward_cuda);
}

}  // namespace mednns_fast
