// CPU kernels of max_avg_pool3x3: the DARTS edge's two pooling candidates (3x3 max and 3x3 average pooling,
// padding 1, the average over the window's valid inputs) from one read of each input plane, in vectors along
// the output row. The window argmax is kept as one byte (its tap, ky * 3 + kx) for the backward.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "cpu/fresh_pages.h"
#include "cpu/plane.h"
#include "cpu/vectorize.h"
#include "pool_common.h"

namespace mednns_fast {
namespace {

// Valid inputs of the window of output o along a side of n inputs: rows (or columns) o*s-1 .. o*s+1.
inline int64_t window_count(int64_t o, int64_t s, int64_t n) {
  const int64_t lo = std::max<int64_t>(o * s - 1, 0), hi = std::min<int64_t>(o * s + 1, n - 1);
  return hi - lo + 1;
}

// One output row of both pools from the -inf-padded (`lo`) and zero-padded (`zero`) planes, `off` the nine
// taps' offsets for this row; `cols` the window's valid column counts [Wo + slack], `rows` this row's.
template <typename T>
MEDNNS_FAST_MULTIVERSION void pool_row(const T* lo, const T* zero, const int64_t* off, const T* cols, T rows,
                                       int64_t Wo, T* max_out, T* avg_out, uint8_t* argmax) {
  constexpr int64_t L = kLanes<T>;
  using V = vec_t<T>;
  for (int64_t ox = 0; ox < Wo; ox += L) {
    V m = load(lo + off[0] + ox), sum = load(zero + off[0] + ox), idx = {};
    for (int64_t t = 1; t < 9; ++t) {
      const V v = load(lo + off[t] + ox);
      // ATen's rule: a larger value or a NaN takes the window (so ties keep the first tap in scan order)
      const auto take = (v > m) | (v != v);
      m = take ? v : m;
      const V tap = V{} + T(t);
      idx = take ? tap : idx;
      sum += load(zero + off[t] + ox);
    }
    const V avg = sum / (load(cols + ox) * rows);
    const int64_t n = std::min(L, Wo - ox);
    T mv[L], av[L], iv[L];
    std::memcpy(mv, &m, sizeof(mv));
    std::memcpy(av, &avg, sizeof(av));
    std::memcpy(iv, &idx, sizeof(iv));
    for (int64_t l = 0; l < n; ++l) {
      max_out[ox + l] = mv[l];
      avg_out[ox + l] = av[l];
      argmax[ox + l] = static_cast<uint8_t>(iv[l]);
    }
  }
}

template <typename T>
void forward_kernel(const at::Tensor& x, const PoolGeometry& g, at::Tensor& out, at::Tensor& argmax) {
  constexpr int64_t L = kLanes<T>;
  const PhasedPlane pp(g.H, g.W, 1, g.stride, L);
  int64_t taps[9];
  for (int64_t t = 0; t < 9; ++t) taps[t] = pp.at(t / 3, t % 3);
  std::vector<T> cols(g.Wo + L, T(1));
  for (int64_t ox = 0; ox < g.Wo; ++ox) cols[ox] = static_cast<T>(window_count(ox, g.stride, g.W));
  const T* xp = x.const_data_ptr<T>();
  T* op = out.data_ptr<T>();
  uint8_t* ap = argmax.data_ptr<uint8_t>();
  const int64_t plane_in = g.H * g.W, plane_out = g.Ho * g.Wo;
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t i0, int64_t i1) {
    std::vector<T> lo(pp.size()), zero(pp.size());
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / g.C, c = i % g.C;
      load_phased(xp + i * plane_in, g.H, g.W, 1, -std::numeric_limits<T>::infinity(), pp, lo.data());
      load_phased(xp + i * plane_in, g.H, g.W, 1, T(0), pp, zero.data());
      T* max_plane = op + (n * 2 * g.C + c) * plane_out;
      T* avg_plane = max_plane + g.C * plane_out;
      uint8_t* arg_plane = ap + i * plane_out;
      for (int64_t oy = 0; oy < g.Ho; ++oy) {
        int64_t off[9];
        for (int64_t t = 0; t < 9; ++t) off[t] = taps[t] + oy * g.stride * pp.width;
        pool_row(lo.data(), zero.data(), off, cols.data(), static_cast<T>(window_count(oy, g.stride, g.H)),
                 g.Wo, max_plane + oy * g.Wo, avg_plane + oy * g.Wo, arg_plane + oy * g.Wo);
      }
      // A window of -inf only keeps its first tap, which is padding on the top row and the left column; ATen
      // names the window's first valid input there instead.
      auto first_valid = [&](int64_t oy, int64_t ox) {
        uint8_t& a = arg_plane[oy * g.Wo + ox];
        if ((oy == 0 && a / 3 == 0) || (ox == 0 && a % 3 == 0)) a = (oy == 0 ? 3 : 0) + (ox == 0 ? 1 : 0);
      };
      for (int64_t ox = 0; ox < g.Wo; ++ox) first_valid(0, ox);
      for (int64_t oy = 1; oy < g.Ho; ++oy) first_valid(oy, 0);
    }
  });
}

// Input gradient of one plane: the max pool's gradient to each window's argmax, the average pool's spread
// over each window's valid inputs, accumulated in the padded plane `gbuf` [(H + 2) x Wp].
template <typename T>
MEDNNS_FAST_MULTIVERSION void backward_plane(const T* gmax, const T* gavg, const uint8_t* argmax,
                                             const PoolGeometry& g, const T* cols, int64_t Wp, T* gbuf,
                                             T* share) {
  const int64_t s = g.stride;
  for (int64_t oy = 0; oy < g.Ho; ++oy) {
    const T rows = static_cast<T>(window_count(oy, s, g.H));
    for (int64_t ox = 0; ox < g.Wo; ++ox) share[ox] = gavg[oy * g.Wo + ox] / (cols[ox] * rows);
    for (int64_t ky = 0; ky < 3; ++ky)
      for (int64_t kx = 0; kx < 3; ++kx) {
        T* dst = gbuf + (oy * s + ky) * Wp + kx;
        if (s == 1) {
          for (int64_t ox = 0; ox < g.Wo; ++ox) dst[ox] += share[ox];
        } else {
          for (int64_t ox = 0; ox < g.Wo; ++ox) dst[ox * s] += share[ox];
        }
      }
    for (int64_t ox = 0; ox < g.Wo; ++ox) {
      const int64_t a = argmax[oy * g.Wo + ox];
      gbuf[(oy * s + a / 3) * Wp + ox * s + a % 3] += gmax[oy * g.Wo + ox];
    }
  }
}

template <typename T>
void backward_kernel(const at::Tensor& grad, const at::Tensor& argmax, const PoolGeometry& g, at::Tensor& grad_x) {
  const int64_t Wp = g.W + 2, plane_in = g.H * g.W, plane_out = g.Ho * g.Wo;
  std::vector<T> cols(g.Wo);
  for (int64_t ox = 0; ox < g.Wo; ++ox) cols[ox] = static_cast<T>(window_count(ox, g.stride, g.W));
  const T* gp = grad.const_data_ptr<T>();
  const uint8_t* ap = argmax.const_data_ptr<uint8_t>();
  T* gx = grad_x.data_ptr<T>();
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t i0, int64_t i1) {
    std::vector<T> gbuf((g.H + 2) * Wp), share(g.Wo);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / g.C, c = i % g.C;
      std::fill(gbuf.begin(), gbuf.end(), T(0));
      const T* gmax = gp + (n * 2 * g.C + c) * plane_out;
      backward_plane(gmax, gmax + g.C * plane_out, ap + i * plane_out, g, cols.data(), Wp, gbuf.data(),
                     share.data());
      for (int64_t y = 0; y < g.H; ++y) std::copy_n(gbuf.data() + (y + 1) * Wp + 1, g.W, gx + i * plane_in + y * g.W);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> max_avg_pool3x3_cpu(const at::Tensor& x, int64_t stride) {
  const PoolGeometry g = pool_geometry(x, stride);
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty({g.N, 2 * g.C, g.Ho, g.Wo}, xc.options());
  at::Tensor argmax = at::empty({g.N, g.C, g.Ho, g.Wo}, xc.options().dtype(at::kByte));
  advise_huge_pages(out);
  if (g.H > 0 && g.W > 0)
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "max_avg_pool3x3_cpu",
                               [&] { forward_kernel<scalar_t>(xc, g, out, argmax); });
  return {out, argmax};
}

at::Tensor max_avg_pool3x3_backward_cpu(const at::Tensor& grad, const at::Tensor& argmax,
                                        at::IntArrayRef input_size, int64_t stride) {
  const PoolGeometry g = pool_backward_geometry(grad, argmax, input_size, stride);
  at::Tensor grad_x = at::empty(input_size, grad.options().memory_format(at::MemoryFormat::Contiguous));
  if (g.Ho > 0 && g.Wo > 0)
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "max_avg_pool3x3_backward_cpu", [&] {
      backward_kernel<scalar_t>(grad.contiguous(), argmax.contiguous(), g, grad_x);
    });
  else
    grad_x.zero_();
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CPU, m) {
  m.impl("max_avg_pool3x3", &max_avg_pool3x3_cpu);
  m.impl("max_avg_pool3x3_backward", &max_avg_pool3x3_backward_cpu);
}

}  // namespace mednns_fast
