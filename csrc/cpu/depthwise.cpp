// CPU kernels of multi_depthwise_conv2d. Each input plane is zero-padded once into a buffer that stays in
// cache while every candidate's kernel slides over it, so J depthwise convolutions cost one read of x.
//
// The padded plane is phased by the stride (cpu/plane.h), so every tap of a strided convolution reads
// consecutive memory. Output rows are computed in blocks of vectors of accumulators that stay in registers
// across all k*k taps (one load and one FMA per tap and vector, no stores until the block is done).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "depthwise_common.h"
#include "cpu/fresh_pages.h"
#include "cpu/plane.h"
#include "cpu/vectorize.h"

namespace mednns_fast {
namespace {

// Where each tap of candidate j starts reading for output (0, 0), and how far one output row moves.
struct Taps {
  std::vector<int64_t> offset;  // [k * k]
  int64_t row_step;
};

Taps candidate_taps(const DepthwiseGeometry& g, const PhasedPlane& pp, int64_t j) {
  const int64_t k = g.kernel[j], d = g.dilation[j], shift = g.max_pad - g.pad[j];
  Taps t{std::vector<int64_t>(k * k), g.stride * pp.width};
  for (int64_t ky = 0; ky < k; ++ky)
    for (int64_t kx = 0; kx < k; ++kx) t.offset[ky * k + kx] = pp.at(shift + ky * d, shift + kx * d);
  return t;
}

// Output rows [0, R) of `o` (rows `out_stride` apart) from `base` (their row 0 in the padded plane), in
// blocks of V vectors: R * V accumulators kept in registers across all taps (R * V independent FMA chains
// hide the FMA latency). `accumulate` adds to what o holds.
template <int64_t R, int64_t V, typename T>
MEDNNS_FAST_MULTIVERSION void conv_rows(const T* base, const T* w, const Taps& taps, int64_t Wo, T* o,
                                        int64_t out_stride, bool accumulate) {
  constexpr int64_t L = kLanes<T>, B = V * L;
  const int64_t n_taps = static_cast<int64_t>(taps.offset.size()), step = taps.row_step;
  const int64_t* off = taps.offset.data();
  for (int64_t ox = 0; ox < Wo; ox += B) {
    vec_t<T> acc[R][V] = {};
    for (int64_t t = 0; t < n_taps; ++t) {
      const T wv = w[t];
      const T* b = base + off[t] + ox;
#pragma GCC unroll 8
      for (int64_t r = 0; r < R; ++r)
#pragma GCC unroll 2
        for (int64_t v = 0; v < V; ++v) acc[r][v] += wv * load(b + r * step + v * L);
    }
    const int64_t n = std::min(B, Wo - ox);
    for (int64_t r = 0; r < R; ++r) {
      T* row = o + r * out_stride + ox;
      if (n == B) {  // a whole block: vector stores
        for (int64_t v = 0; v < V; ++v)
          store(row + v * L, accumulate ? load(row + v * L) + acc[r][v] : acc[r][v]);
      } else {
        T lanes[B];
        std::memcpy(lanes, acc[r], sizeof(lanes));
        for (int64_t l = 0; l < n; ++l) row[l] = accumulate ? row[l] + lanes[l] : lanes[l];
      }
    }
  }
}

template <int64_t R, int64_t V, typename T>
void conv_plane_blocked(const T* buf, const T* w, const Taps& taps, int64_t Ho, int64_t Wo, T* out,
                        int64_t out_stride, bool accumulate) {
  int64_t oy = 0;
  for (; oy + R <= Ho; oy += R)
    conv_rows<R, V>(buf + oy * taps.row_step, w, taps, Wo, out + oy * out_stride, out_stride, accumulate);
  for (; oy < Ho; ++oy)
    conv_rows<1, V>(buf + oy * taps.row_step, w, taps, Wo, out + oy * out_stride, out_stride, accumulate);
}

// out[oy, ox] (+)= sum_t w[t] * buf[offset[t] + oy * row_step + ox] for one [Ho, Wo] plane, with out's rows
// `out_stride` apart. Narrow planes use one-vector blocks over more rows (no lanes wasted past Wo).
template <typename T>
void conv_plane(const T* buf, const T* w, const Taps& taps, int64_t Ho, int64_t Wo, T* out, int64_t out_stride,
                bool accumulate) {
  if (Wo <= kLanes<T>) {
    conv_plane_blocked<8, 1>(buf, w, taps, Ho, Wo, out, out_stride, accumulate);
  } else {
    conv_plane_blocked<4, kVecs>(buf, w, taps, Ho, Wo, out, out_stride, accumulate);
  }
}

// gw[t] += sum_{oy, ox} go[oy, ox] * buf[offset[t] + oy * row_step + ox] over one [Ho, Wo] gradient plane.
// Whole vectors are summed over R rows at a time (R independent chains); the columns past the last whole
// vector lane by lane: reading past Wo would multiply zeros by input values that no output reads (an inf
// there would make the gradient NaN).
template <typename T>
MEDNNS_FAST_MULTIVERSION void weight_grad_plane(const T* buf, const T* go, const Taps& taps, int64_t Ho,
                                                int64_t Wo, double* gw) {
  constexpr int64_t L = kLanes<T>, R = 4;
  const int64_t n_taps = static_cast<int64_t>(taps.offset.size()), full = Wo / L * L, step = taps.row_step;
  for (int64_t t = 0; t < n_taps; ++t) {
    vec_t<T> acc[R] = {};
    T tail = 0;
    const T* b0 = buf + taps.offset[t];
    int64_t oy = 0;
    for (; oy + R <= Ho; oy += R)
      for (int64_t ox = 0; ox < full; ox += L)
#pragma GCC unroll 8
        for (int64_t r = 0; r < R; ++r) acc[r] += load(go + (oy + r) * Wo + ox) * load(b0 + (oy + r) * step + ox);
    for (; oy < Ho; ++oy)
      for (int64_t ox = 0; ox < full; ox += L) acc[0] += load(go + oy * Wo + ox) * load(b0 + oy * step + ox);
    for (oy = 0; oy < Ho; ++oy)
      for (int64_t ox = full; ox < Wo; ++ox) tail += go[oy * Wo + ox] * b0[oy * step + ox];
    T lanes[R * L];
    std::memcpy(lanes, acc, sizeof(lanes));
    double sum = tail;
    for (int64_t l = 0; l < R * L; ++l) sum += lanes[l];
    gw[t] += sum;
  }
}

// Input channel plane q feeds these candidates (shared input: all of them; else only q / C).
inline std::pair<int64_t, int64_t> consumers(const DepthwiseGeometry& g, int64_t q) {
  if (g.shared_input) return {0, g.J};
  return {q / g.C, q / g.C + 1};
}

// The weights, candidate j channel c at [offset[j] + c * k_j^2].
template <typename T>
std::vector<T> gather_weights(const std::vector<at::Tensor>& ws, const DepthwiseGeometry& g,
                              std::vector<int64_t>* offsets) {
  std::vector<T> out;
  for (int64_t j = 0; j < g.J; ++j) {
    const int64_t kk = g.kernel[j] * g.kernel[j];
    const T* w = ws[j].const_data_ptr<T>();
    offsets->push_back(static_cast<int64_t>(out.size()));
    out.insert(out.end(), w, w + g.C * kk);
  }
  return out;
}

template <typename T>
void forward_kernel(const at::Tensor& x, const std::vector<at::Tensor>& ws, const DepthwiseGeometry& g,
                    at::Tensor& out) {
  const PhasedPlane pp(g.H, g.W, g.max_pad, g.stride, kBlock<T>);
  std::vector<Taps> taps;
  for (int64_t j = 0; j < g.J; ++j) taps.push_back(candidate_taps(g, pp, j));
  std::vector<int64_t> w_at;
  const std::vector<T> w = gather_weights<T>(ws, g, &w_at);
  const int64_t Cin = g.in_channels();
  const T* xp = x.const_data_ptr<T>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, g.N * Cin, 1, [&](int64_t i0, int64_t i1) {
    std::vector<T> buf(pp.size());
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / Cin, q = i % Cin, c = q % g.C;
      load_phased(xp + i * g.H * g.W, g.H, g.W, g.max_pad, T(0), pp, buf.data());
      const auto [j0, j1] = consumers(g, q);
      for (int64_t j = j0; j < j1; ++j)
        conv_plane(buf.data(), w.data() + w_at[j] + c * g.kernel[j] * g.kernel[j], taps[j], g.Ho, g.Wo,
                   op + ((n * g.J + j) * g.C + c) * g.Ho * g.Wo, g.Wo, false);
    }
  });
}

// The input gradient as s*s stride-1 correlations of the output gradient, one per phase (py, px) of the
// input grid: input row y = py + s*Y is read through tap ky by output row oy = (y + pad - ky*d) / s, when s
// divides y + pad - ky*d, i.e. by oy = Y + (py + pad - ky*d) / s. So the input rows of phase py gather the
// taps ky with (py + pad - ky*d) % s == 0 from the zero-padded output-gradient plane, each at a fixed row
// offset; columns alike. Every tap belongs to one phase: s*s gathers cost what the forward does, each
// input gradient is written by one thread, and nothing is scattered. Stride 1 is one phase (the
// convolution with the flipped kernel).
struct InputGradPlan {
  // Phases with input pixels: py < ny = min(s, H), px < nx = min(s, W) (a huge stride has s*s phases but
  // at most H*W of them hold a pixel). Phase (0, 0) has the most rows and columns: rows0 x cols0.
  int64_t s, ny, nx, rows0, cols0;
  std::vector<int64_t> rows, cols;  // [ny], [nx]: input rows with y % s == py, columns with x % s == px
  std::vector<Taps> taps;           // [J * ny * nx]: tap offsets into the padded output-gradient plane
  std::vector<int64_t> w_at;        // [J * ny * nx]: where the phase's C sub-kernels start in `w`
  int64_t phases() const { return ny * nx; }
};

template <typename T>
InputGradPlan input_grad_plan(const std::vector<at::Tensor>& ws, const DepthwiseGeometry& g,
                              const PhasedPlane& gp, std::vector<T>* w) {
  const int64_t s = g.stride, P = g.max_pad;
  InputGradPlan plan{s, std::min(s, g.H), std::min(s, g.W), (g.H + s - 1) / s, (g.W + s - 1) / s, {}, {}, {}, {}};
  for (int64_t p = 0; p < plan.ny; ++p) plan.rows.push_back((g.H - p + s - 1) / s);
  for (int64_t p = 0; p < plan.nx; ++p) plan.cols.push_back((g.W - p + s - 1) / s);
  for (int64_t j = 0; j < g.J; ++j) {
    const int64_t k = g.kernel[j], d = g.dilation[j], pad = g.pad[j];
    const T* wj = ws[j].const_data_ptr<T>();
    std::vector<Taps> taps(plan.phases(), Taps{{}, gp.width});
    std::vector<std::vector<int64_t>> kept(plan.phases());  // each phase's taps t = ky * k + kx
    // Taps last to first, so each phase reads the padded plane at increasing offsets (at stride 1: the
    // flipped kernel).
    for (int64_t ky = k - 1; ky >= 0; --ky)
      for (int64_t kx = k - 1; kx >= 0; --kx) {
        // The phase this tap feeds: py = (ky*d - pad) mod s; none when that phase holds no input pixel.
        const int64_t py = ((ky * d - pad) % s + s) % s, px = ((kx * d - pad) % s + s) % s;
        if (py >= plan.ny || px >= plan.nx) continue;
        // Rows read, P + Y + ry / s, stay in [0, Ho + 2P): ry / s >= -pad / s >= -P, and Y < Ho with
        // ry / s <= (s - 1 + pad) / s <= P (columns alike; the block's overreach lands in the slack).
        const int64_t ry = py + pad - ky * d, rx = px + pad - kx * d, ph = py * plan.nx + px;
        taps[ph].offset.push_back(gp.at(P + ry / s, P + rx / s));
        kept[ph].push_back(ky * k + kx);
      }
    for (int64_t ph = 0; ph < plan.phases(); ++ph) {
      plan.w_at.push_back(static_cast<int64_t>(w->size()));
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t tap : kept[ph]) w->push_back(wj[c * k * k + tap]);
      plan.taps.push_back(std::move(taps[ph]));
    }
  }
  return plan;
}

// Writes the phases (py, px) of `phased` (each [rows0, cols0]) into the input-gradient plane gx [H, W].
template <typename T>
void interleave_phases(const T* phased, const InputGradPlan& plan, int64_t H, int64_t W, T* gx) {
  const int64_t s = plan.s, area = plan.rows0 * plan.cols0;
  for (int64_t y = 0; y < H; ++y) {
    const int64_t py = y % s, Y = y / s;
    T* dst = gx + y * W;
    const T* row = phased + py * plan.nx * area + Y * plan.cols0;  // phase (py, 0)'s row Y
    if (s == 2 && plan.nx == 2) {  // both column phases at once (the compiler interleaves with shuffles)
      const T* p1 = row + area;
      const int64_t pairs = W / 2;
      for (int64_t X = 0; X < pairs; ++X) {
        dst[2 * X] = row[X];
        dst[2 * X + 1] = p1[X];
      }
      if (W % 2) dst[W - 1] = row[pairs];
      continue;
    }
    for (int64_t px = 0; px < plan.nx; ++px) {
      const T* src = row + px * area;
      for (int64_t X = 0, x = px; x < W; ++X, x += s) dst[x] = src[X];
    }
  }
}

// One task per input channel plane q, looping over the batch inside: the weight gradient of every
// (candidate, channel) pair is then owned by one thread and needs no atomics (partial sums per plane in
// T, summed over planes in double).
template <typename T>
void backward_kernel(const at::Tensor& grad, const at::Tensor& x, const std::vector<at::Tensor>& ws,
                     const DepthwiseGeometry& g, at::Tensor* grad_x, std::vector<at::Tensor>* grad_ws) {
  const int64_t Cin = g.in_channels(), plane_in = g.H * g.W, plane_out = g.Ho * g.Wo, s = g.stride;
  // The input plane, phased by the stride, for the weight gradient.
  const PhasedPlane pp(g.H, g.W, g.max_pad, s, kBlock<T>);
  std::vector<Taps> taps;
  for (int64_t j = 0; j < g.J; ++j) taps.push_back(candidate_taps(g, pp, j));
  // The output gradient zero-padded by max_pad, for the input gradient's gathers.
  const PhasedPlane gp_plane(g.Ho, g.Wo, g.max_pad, 1, kBlock<T>);
  std::vector<T> w_phase;
  const InputGradPlan plan = input_grad_plan<T>(ws, g, gp_plane, &w_phase);
  const int64_t area = plan.rows0 * plan.cols0;
  int64_t kmax = 0;
  for (int64_t k : g.kernel) kmax = std::max(kmax, k);
  std::vector<double> gw(grad_ws ? g.J * g.C * kmax * kmax : 0, 0.0);
  const T* xp = x.const_data_ptr<T>();
  const T* gp = grad.const_data_ptr<T>();
  at::parallel_for(0, Cin, 1, [&](int64_t q0, int64_t q1) {
    std::vector<T> buf(grad_ws ? pp.size() : 0);
    std::vector<T> gbuf(grad_x ? gp_plane.size() : 0);
    // Stride 1 writes straight into the input gradient; larger strides into the phase planes first.
    const int64_t n_phases = plan.phases();
    std::vector<T> phased(grad_x && s > 1 ? n_phases * area : 0);
    std::vector<char> written(n_phases);
    for (int64_t q = q0; q < q1; ++q) {
      const auto [j0, j1] = consumers(g, q);
      const int64_t c = q % g.C;
      for (int64_t n = 0; n < g.N; ++n) {
        const int64_t plane = n * Cin + q;
        T* gx = grad_x ? grad_x->data_ptr<T>() + plane * plane_in : nullptr;
        if (grad_ws) load_phased(xp + plane * plane_in, g.H, g.W, g.max_pad, T(0), pp, buf.data());
        std::fill(written.begin(), written.end(), 0);
        for (int64_t j = j0; j < j1; ++j) {
          const T* gj = gp + ((n * g.J + j) * g.C + c) * plane_out;
          if (grad_ws)
            weight_grad_plane(buf.data(), gj, taps[j], g.Ho, g.Wo, gw.data() + (j * g.C + c) * kmax * kmax);
          if (!grad_x) continue;
          load_phased(gj, g.Ho, g.Wo, g.max_pad, T(0), gp_plane, gbuf.data());
          for (int64_t ph = 0; ph < n_phases; ++ph) {
            const Taps& t = plan.taps[j * n_phases + ph];
            if (t.offset.empty()) continue;  // no tap of candidate j reads these input pixels
            const T* wj = w_phase.data() + plan.w_at[j * n_phases + ph] + c * static_cast<int64_t>(t.offset.size());
            if (s == 1) {
              conv_plane(gbuf.data(), wj, t, g.H, g.W, gx, g.W, written[ph]);
            } else {
              conv_plane(gbuf.data(), wj, t, plan.rows[ph / plan.nx], plan.cols[ph % plan.nx],
                         phased.data() + ph * area, plan.cols0, written[ph]);
            }
            written[ph] = 1;
          }
        }
        if (!grad_x) continue;
        for (int64_t ph = 0; ph < n_phases; ++ph) {  // phases no tap reads get a zero gradient
          if (written[ph]) continue;
          if (s == 1) {
            std::fill_n(gx, plane_in, T(0));
          } else {
            std::fill_n(phased.data() + ph * area, area, T(0));
          }
        }
        if (s > 1) interleave_phases(phased.data(), plan, g.H, g.W, gx);
      }
    }
  });
  if (grad_ws) {
    for (int64_t j = 0; j < g.J; ++j) {
      const int64_t k = g.kernel[j];
      at::Tensor t = at::empty({g.C, 1, k, k}, x.options());
      T* tp = t.data_ptr<T>();
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t t2 = 0; t2 < k * k; ++t2) tp[c * k * k + t2] = static_cast<T>(gw[(j * g.C + c) * kmax * kmax + t2]);
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
  advise_huge_pages(out);
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
