// CPU kernels of multi_depthwise_conv2d: each input plane is zero-padded once into a buffer that stays in
// cache while every candidate's kernel slides over it, so J depthwise convolutions cost one read of x.
// Rows are swept along the output width, which the compiler vectorises for stride 1.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "depthwise_common.h"
#include "cpu/vectorize.h"

namespace mednns_fast {
namespace {

constexpr int64_t kLanes = 8;

struct Padded {
  int64_t Hp, Wp;
  explicit Padded(const DepthwiseGeometry& g) : Hp(g.H + 2 * g.max_pad), Wp(g.W + 2 * g.max_pad) {}
  int64_t size() const { return Hp * Wp; }
};

template <typename scalar_t, typename acc_t>
void load_padded(const scalar_t* plane, const DepthwiseGeometry& g, const Padded& pd, acc_t* buf) {
  std::fill(buf, buf + pd.size(), acc_t(0));
  for (int64_t y = 0; y < g.H; ++y) {
    acc_t* dst = buf + (y + g.max_pad) * pd.Wp + g.max_pad;
    for (int64_t x = 0; x < g.W; ++x) dst[x] = static_cast<acc_t>(plane[y * g.W + x]);
  }
}

// Top-left of tap (ky, kx) for output row oy in the padded plane of candidate j.
inline int64_t tap_offset(const DepthwiseGeometry& g, const Padded& pd, int64_t j, int64_t oy, int64_t ky,
                          int64_t kx) {
  const int64_t shift = g.max_pad - g.pad[j];
  return (oy * g.stride + shift + ky * g.dilation[j]) * pd.Wp + shift + kx * g.dilation[j];
}

// Input channel plane q feeds these candidates (shared input: all of them; else only q / C).
inline std::pair<int64_t, int64_t> consumers(const DepthwiseGeometry& g, int64_t q) {
  if (g.shared_input) return {0, g.J};
  return {q / g.C, q / g.C + 1};
}

// Candidate j's output plane from the padded input plane `buf`.
template <typename scalar_t, typename acc_t>
MEDNNS_FAST_MULTIVERSION void conv_plane(const acc_t* buf, const scalar_t* w, const DepthwiseGeometry& g,
                                         const Padded& pd, int64_t j, scalar_t* o, acc_t* row) {
  const int64_t k = g.kernel[j], s = g.stride;
  for (int64_t oy = 0; oy < g.Ho; ++oy) {
    std::fill(row, row + g.Wo, acc_t(0));
    for (int64_t ky = 0; ky < k; ++ky)
      for (int64_t kx = 0; kx < k; ++kx) {
        const acc_t wv = static_cast<acc_t>(w[ky * k + kx]);
        const acc_t* b = buf + tap_offset(g, pd, j, oy, ky, kx);
        if (s == 1) {
          for (int64_t ox = 0; ox < g.Wo; ++ox) row[ox] += wv * b[ox];
        } else {
          for (int64_t ox = 0; ox < g.Wo; ++ox) row[ox] += wv * b[ox * s];
        }
      }
    for (int64_t ox = 0; ox < g.Wo; ++ox) o[oy * g.Wo + ox] = static_cast<scalar_t>(row[ox]);
  }
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& x, const std::vector<at::Tensor>& ws, const DepthwiseGeometry& g,
                    at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const Padded pd(g);
  const int64_t Cin = g.in_channels();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  at::parallel_for(0, g.N * Cin, 1, [&](int64_t i0, int64_t i1) {
    std::vector<acc_t> buf(pd.size()), row(g.Wo);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / Cin, q = i % Cin;
      load_padded(xp + i * g.H * g.W, g, pd, buf.data());
      const auto [j0, j1] = consumers(g, q);
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t c = q % g.C, k = g.kernel[j];
        conv_plane(buf.data(), ws[j].const_data_ptr<scalar_t>() + c * k * k, g, pd, j,
                   op + ((n * g.J + j) * g.C + c) * g.Ho * g.Wo, row.data());
      }
    }
  });
}

template <typename scalar_t, typename acc_t>
inline acc_t strided_dot(const scalar_t* a, const acc_t* b, int64_t n, int64_t stride) {
  acc_t lanes[kLanes] = {};
  int64_t i = 0;
  if (stride == 1)
    for (; i + kLanes <= n; i += kLanes)
      for (int64_t l = 0; l < kLanes; ++l) lanes[l] += static_cast<acc_t>(a[i + l]) * b[i + l];
  for (; i < n; ++i) lanes[0] += static_cast<acc_t>(a[i]) * b[i * stride];
  acc_t s = 0;
  for (int64_t l = 0; l < kLanes; ++l) s += lanes[l];
  return s;
}

// Candidate j's contribution from one output-gradient plane `go`: added into the padded input-gradient
// plane `gbuf` and into the tap gradients `gw` (either may be null when not needed).
template <typename scalar_t, typename acc_t>
MEDNNS_FAST_MULTIVERSION void conv_plane_backward(const scalar_t* go, const acc_t* buf, const scalar_t* w,
                                                  const DepthwiseGeometry& g, const Padded& pd, int64_t j,
                                                  acc_t* gbuf, double* gw) {
  const int64_t k = g.kernel[j], s = g.stride;
  for (int64_t ky = 0; ky < k; ++ky)
    for (int64_t kx = 0; kx < k; ++kx) {
      const acc_t wv = static_cast<acc_t>(w[ky * k + kx]);
      acc_t tap = 0;
      for (int64_t oy = 0; oy < g.Ho; ++oy) {
        const int64_t off = tap_offset(g, pd, j, oy, ky, kx);
        const scalar_t* gr = go + oy * g.Wo;
        if (gbuf) {
          acc_t* d = gbuf + off;
          if (s == 1) {
            for (int64_t ox = 0; ox < g.Wo; ++ox) d[ox] += wv * static_cast<acc_t>(gr[ox]);
          } else {
            for (int64_t ox = 0; ox < g.Wo; ++ox) d[ox * s] += wv * static_cast<acc_t>(gr[ox]);
          }
        }
        if (gw) tap += strided_dot(gr, buf + off, g.Wo, s);
      }
      if (gw) gw[ky * k + kx] += tap;
    }
}

// One task per input channel plane q, looping over the batch inside: the weight gradient of every
// (candidate, channel) pair is then owned by one thread and needs no atomics.
template <typename scalar_t>
void backward_kernel(const at::Tensor& grad, const at::Tensor& x, const std::vector<at::Tensor>& ws,
                     const DepthwiseGeometry& g, at::Tensor* grad_x, std::vector<at::Tensor>* grad_ws) {
  using acc_t = at::opmath_type<scalar_t>;
  const Padded pd(g);
  const int64_t Cin = g.in_channels();
  int64_t kmax = 0;
  for (int64_t k : g.kernel) kmax = std::max(kmax, k);
  std::vector<double> gw(grad_ws ? g.J * g.C * kmax * kmax : 0, 0.0);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const scalar_t* gp = grad.const_data_ptr<scalar_t>();
  at::parallel_for(0, Cin, 1, [&](int64_t q0, int64_t q1) {
    std::vector<acc_t> buf(pd.size()), gbuf(pd.size());
    for (int64_t q = q0; q < q1; ++q) {
      const auto [j0, j1] = consumers(g, q);
      const int64_t c = q % g.C;
      for (int64_t n = 0; n < g.N; ++n) {
        const int64_t plane = n * Cin + q;
        if (grad_ws) load_padded(xp + plane * g.H * g.W, g, pd, buf.data());
        if (grad_x) std::fill(gbuf.begin(), gbuf.end(), acc_t(0));
        for (int64_t j = j0; j < j1; ++j) {
          const int64_t k = g.kernel[j];
          conv_plane_backward(gp + ((n * g.J + j) * g.C + c) * g.Ho * g.Wo, buf.data(),
                              ws[j].const_data_ptr<scalar_t>() + c * k * k, g, pd, j,
                              grad_x ? gbuf.data() : nullptr,
                              grad_ws ? gw.data() + (j * g.C + c) * kmax * kmax : nullptr);
        }
        if (grad_x) {
          scalar_t* dst = grad_x->data_ptr<scalar_t>() + plane * g.H * g.W;
          for (int64_t y = 0; y < g.H; ++y) {
            const acc_t* src = gbuf.data() + (y + g.max_pad) * pd.Wp + g.max_pad;
            for (int64_t xx = 0; xx < g.W; ++xx) dst[y * g.W + xx] = static_cast<scalar_t>(src[xx]);
          }
        }
      }
    }
  });
  if (grad_ws) {
    for (int64_t j = 0; j < g.J; ++j) {
      const int64_t k = g.kernel[j];
      at::Tensor t = at::empty({g.C, 1, k, k}, x.options());
      scalar_t* tp = t.data_ptr<scalar_t>();
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t t2 = 0; t2 < k * k; ++t2)
          tp[c * k * k + t2] = static_cast<scalar_t>(gw[(j * g.C + c) * kmax * kmax + t2]);
      grad_ws->push_back(t);
    }
  }
}

std::vector<at::Tensor> contiguous_all(at::TensorList ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.contiguous());
  return out;
}

at::Tensor multi_depthwise_conv2d_cpu(const at::Tensor& x, at::TensorList weights, at::IntArrayRef dilations,
                                      int64_t stride, bool shared_input) {
  const DepthwiseGeometry g = depthwise_geometry(x, weights, dilations, stride, shared_input);
  const at::Tensor xc = x.contiguous();
  const std::vector<at::Tensor> ws = contiguous_all(weights);
  at::Tensor out = at::empty({g.N, g.J * g.C, g.Ho, g.Wo}, x.options().memory_format(at::MemoryFormat::Contiguous));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "multi_depthwise_conv2d_cpu",
                             [&] { forward_kernel<scalar_t>(xc, ws, g, out); });
  return out;
}

std::tuple<at::Tensor, std::vector<at::Tensor>> multi_depthwise_conv2d_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, at::TensorList weights, at::IntArrayRef dilations,
    int64_t stride, bool shared_input, bool x_needs_grad, bool weights_need_grad) {
  const DepthwiseGeometry g = depthwise_geometry(x, weights, dilations, stride, shared_input);
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == g.N && grad.size(1) == g.J * g.C &&
                        grad.size(2) == g.Ho && grad.size(3) == g.Wo,
                    "multi_depthwise_conv2d_backward: grad must be [", g.N, ", ", g.J * g.C, ", ", g.Ho, ", ",
                    g.Wo, "], got ", grad.sizes());
  check_same_dtype(grad, "multi_depthwise_conv2d_backward: grad", x, "x");
  const at::Tensor xc = x.contiguous(), gc = grad.contiguous();
  const std::vector<at::Tensor> ws = contiguous_all(weights);
  at::Tensor grad_x = x_needs_grad ? at::empty(xc.sizes(), xc.options()) : at::empty({0}, x.options());
  std::vector<at::Tensor> grad_ws;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "multi_depthwise_conv2d_backward_cpu", [&] {
    backward_kernel<scalar_t>(gc, xc, ws, g, x_needs_grad ? &grad_x : nullptr,
                              weights_need_grad ? &grad_ws : nullptr);
  });
  if (!weights_need_grad)
    for (int64_t j = 0; j < g.J; ++j) grad_ws.push_back(at::empty({0}, x.options()));
  return {grad_x, grad_ws};
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CPU, m) {
  m.impl("multi_depthwise_conv2d", &multi_depthwise_conv2d_cpu);
  m.impl("multi_depthwise_conv2d_backward", &multi_depthwise_conv2d_backward_cpu);
}

}  // namespace mednns_fast
