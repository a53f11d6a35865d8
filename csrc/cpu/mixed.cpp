// CPU kernels of mixed_sum: one read of every input and one write of the output (forward); one read
// of grad and the inputs, one write of every needed input gradient (backward).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "cpu/fresh_pages.h"
#include "cpu/vec32.h"
#include "cpu/vectorize.h"
#include "mixed_common.h"

namespace mednns_fast {
namespace {

// Work is split into chunks that never cross a row, so each chunk has one weight row. Chunks are a
// fixed size, which keeps the weight-gradient reduction order (and result) independent of threads.
constexpr int64_t kChunk = 1 << 15;
// Backward: a block of grad stays in L1 while the candidates' inputs and gradients stream past it.
constexpr int64_t kGradBlock = 1024;
// Forward: vectors of accumulators that stay in registers across all candidates (an even number: loads and
// stores go two vectors at a time).
constexpr int64_t kTileVecs = 4;

struct ChunkGrid {
  int64_t rows, inner, per_row;
  explicit ChunkGrid(const MixedSumLayout& l)
      : rows(l.rows), inner(l.inner), per_row(std::max<int64_t>(1, (l.inner + kChunk - 1) / kChunk)) {}
  int64_t count() const { return rows * per_row; }
  int64_t row(int64_t c) const { return c / per_row; }
  int64_t begin(int64_t c) const { return (c % per_row) * kChunk; }
  int64_t end(int64_t c) const { return std::min(begin(c) + kChunk, inner); }
};

// Weights as a host array [rows or 1, K] in the accumulation type; NaN or infinite weights are refused.
template <typename acc_t>
std::vector<acc_t> host_weights(const at::Tensor& weights) {
  check_finite(weights, "mixed_sum: weights");
  at::Tensor w = weights.to(at::kDouble).contiguous();
  const double* p = w.const_data_ptr<double>();
  return std::vector<acc_t>(p, p + w.numel());
}

template <typename scalar_t>
std::vector<const scalar_t*> input_pointers(const MixedSumLayout& l) {
  std::vector<const scalar_t*> ptrs;
  for (const auto& x : l.xs) ptrs.push_back(x.const_data_ptr<scalar_t>());
  return ptrs;
}

// out[i] = sum_k w[k] * x[k][i] over n elements, k = 0, 1, ... for every element as in the reference: the
// hot loop, compiled per x86-64 level. A tile of kTileVecs vectors of accumulators stays in registers while
// all K inputs are read side by side, so K memory streams are in flight at once (reading one input after
// the other leaves one stream, whose prefetch restarts at every page).
template <typename scalar_t, typename acc_t>
MEDNNS_FAST_MULTIVERSION void weighted_sum(scalar_t* __restrict__ out, const scalar_t* const* x, const acc_t* w,
                                           int64_t K, int64_t n) {
  constexpr int64_t L = kLanes<acc_t>, tile = kTileVecs * L;
  int64_t i = 0;
  for (; i + tile <= n; i += tile) {
    vec_t<acc_t> acc[kTileVecs], t[2];
    for (int64_t v = 0; v < kTileVecs; v += 2) {
      load_wide2(x[0] + i + v * L, t[0], t[1]);
      acc[v] = w[0] * t[0];
      acc[v + 1] = w[0] * t[1];
    }
    for (int64_t k = 1; k < K; ++k)
      for (int64_t v = 0; v < kTileVecs; v += 2) {
        load_wide2(x[k] + i + v * L, t[0], t[1]);
        acc[v] += w[k] * t[0];
        acc[v + 1] += w[k] * t[1];
      }
    for (int64_t v = 0; v < kTileVecs; v += 2) store_narrow2(out + i + v * L, acc[v], acc[v + 1]);
  }
  for (; i < n; ++i) {
    acc_t a = w[0] * static_cast<acc_t>(x[0][i]);
    for (int64_t k = 1; k < K; ++k) a += w[k] * static_cast<acc_t>(x[k][i]);
    out[i] = static_cast<scalar_t>(a);
  }
}

template <typename scalar_t>
void forward_kernel(const MixedSumLayout& l, const at::Tensor& weights, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const std::vector<acc_t> w = host_weights<acc_t>(weights);
  const std::vector<const scalar_t*> xp = input_pointers<scalar_t>(l);
  scalar_t* op = out.data_ptr<scalar_t>();
  const ChunkGrid grid(l);
  const int64_t K = l.K;
  const bool prefault = should_prefault(out);
  at::parallel_for(0, grid.count(), 1, [&](int64_t c0, int64_t c1) {
    // The candidates of the current row with a nonzero weight (a pruned candidate is never read).
    std::vector<const scalar_t*> x(K);
    std::vector<acc_t> wa(K);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r = grid.row(c), b = grid.begin(c), n = grid.end(c) - b;
      const acc_t* wr = w.data() + (l.per_row_weights ? r * K : 0);
      int64_t active = 0;
      for (int64_t k = 0; k < K; ++k) {
        if (wr[k] == acc_t(0)) continue;
        x[active] = xp[k] + r * l.row_stride[k] + b;
        wa[active++] = wr[k];
      }
      scalar_t* o = op + r * l.inner + b;
      if (prefault) prefault_for_write(o, n * sizeof(scalar_t));
      if (active == 0) {
        std::fill(o, o + n, scalar_t(0));
      } else {
        weighted_sum(o, x.data(), wa.data(), active, n);
      }
    }
  });
}

// gx[i] = w * g[i] over n elements (an input's gradient).
template <typename scalar_t, typename acc_t>
MEDNNS_FAST_MULTIVERSION void scaled_copy(scalar_t* __restrict__ gx, const scalar_t* __restrict__ g, acc_t w,
                                          int64_t n) {
  constexpr int64_t L = kLanes<acc_t>;
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    vec_t<acc_t> a, b;
    load_wide2(g + i, a, b);
    store_narrow2(gx + i, w * a, w * b);
  }
  for (; i < n; ++i) gx[i] = static_cast<scalar_t>(w * static_cast<acc_t>(g[i]));
}

// sum_i x[i] * g[i] over n elements (a weight's gradient), accumulated in two independent vectors of the
// accumulation type (more FMA chains in flight), then in double. The order depends on n only, never on the
// thread count.
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
MEDNNS_FAST_MULTIVERSION double dot(const scalar_t* x, const scalar_t* g, int64_t n) {
  constexpr int64_t L = kLanes<acc_t>;
  vec_t<acc_t> acc[2] = {}, xv[2], gv[2];
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    load_wide2(x + i, xv[0], xv[1]);
    load_wide2(g + i, gv[0], gv[1]);
    acc[0] += xv[0] * gv[0];
    acc[1] += xv[1] * gv[1];
  }
  double s = 0;
  for (; i < n; ++i) s += static_cast<acc_t>(x[i]) * static_cast<acc_t>(g[i]);
  for (int64_t v = 0; v < 2; ++v)
    for (int64_t j = 0; j < L; ++j) s += acc[v][j];
  return s;
}

// Four candidates of one block at once: their input gradients gx[j][i] = w[j] * g[i] written and their dot
// products with g accumulated in registers: eight memory streams (four gradients written, four inputs read)
// advance together while the block of g stays in L1.
template <typename scalar_t, typename acc_t>
MEDNNS_FAST_MULTIVERSION void gradients4(const scalar_t* __restrict__ g, int64_t n, scalar_t* const* gx,
                                         const acc_t* w, const scalar_t* const* x, double* dots) {
  constexpr int64_t L = kLanes<acc_t>;
  vec_t<acc_t> acc[4] = {}, ga, gb, xa, xb;
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    load_wide2(g + i, ga, gb);
    for (int64_t j = 0; j < 4; ++j) {
      store_narrow2(gx[j] + i, w[j] * ga, w[j] * gb);
      load_wide2(x[j] + i, xa, xb);
      acc[j] += xa * ga;
      acc[j] += xb * gb;
    }
  }
  for (int64_t j = 0; j < 4; ++j) {
    double s = 0;
    for (int64_t t = i; t < n; ++t) {
      gx[j][t] = static_cast<scalar_t>(w[j] * static_cast<acc_t>(g[t]));
      s += static_cast<acc_t>(x[j][t]) * static_cast<acc_t>(g[t]);
    }
    for (int64_t l = 0; l < L; ++l) s += acc[j][l];
    dots[j] += s;
  }
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad, const MixedSumLayout& l, const at::Tensor& weights,
                     const std::vector<at::Tensor>& grad_xs, at::Tensor* grad_w) {
  using acc_t = at::opmath_type<scalar_t>;
  const std::vector<acc_t> w = host_weights<acc_t>(weights);
  const std::vector<const scalar_t*> xp = input_pointers<scalar_t>(l);
  std::vector<scalar_t*> gxp;
  for (const auto& t : grad_xs) gxp.push_back(t.defined() ? t.data_ptr<scalar_t>() : nullptr);
  const scalar_t* gp = grad.const_data_ptr<scalar_t>();
  const ChunkGrid grid(l);
  const int64_t K = l.K;
  // Every input's gradient and the weights' requested (DARTS search): candidates go four at a time.
  const bool every_gradient = grad_w && std::all_of(gxp.begin(), gxp.end(), [](scalar_t* p) { return p; });
  // Per-chunk partial dot products, reduced in a fixed order afterwards.
  std::vector<double> partial(grad_w ? grid.count() * K : 0, 0.0);
  const bool prefault = should_prefault(grad);  // every input gradient has grad's size
  at::parallel_for(0, grid.count(), 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r = grid.row(c), chunk_bytes = (grid.end(c) - grid.begin(c)) * sizeof(scalar_t);
      for (int64_t k = 0; prefault && k < K; ++k)
        if (gxp[k]) prefault_for_write(gxp[k] + r * l.inner + grid.begin(c), chunk_bytes);
      const acc_t* wr = w.data() + (l.per_row_weights ? r * K : 0);
      for (int64_t b = grid.begin(c); b < grid.end(c); b += kGradBlock) {
        const int64_t n = std::min(kGradBlock, grid.end(c) - b);
        const scalar_t* g = gp + r * l.inner + b;
        int64_t k = 0;
        for (; every_gradient && k + 4 <= K; k += 4) {
          scalar_t* gx[4];
          const scalar_t* x[4];
          for (int64_t j = 0; j < 4; ++j) {
            gx[j] = gxp[k + j] + r * l.inner + b;
            x[j] = xp[k + j] + r * l.row_stride[k + j] + b;
          }
          gradients4(g, n, gx, wr + k, x, partial.data() + c * K + k);
        }
        for (; k < K; ++k) {
          if (gxp[k]) scaled_copy(gxp[k] + r * l.inner + b, g, wr[k], n);
          if (grad_w) partial[c * K + k] += dot(xp[k] + r * l.row_stride[k] + b, g, n);
        }
      }
    }
  });
  if (grad_w) {
    const int64_t out_rows = l.per_row_weights ? l.rows : 1;
    at::Tensor acc = at::zeros({out_rows, K}, at::kDouble);
    double* a = acc.data_ptr<double>();
    for (int64_t c = 0; c < grid.count(); ++c) {
      const int64_t r = l.per_row_weights ? grid.row(c) : 0;
      for (int64_t k = 0; k < K; ++k) a[r * K + k] += partial[c * K + k];
    }
    *grad_w = acc.to(weights.scalar_type()).view(weights.sizes());
  }
}

at::Tensor mixed_sum_cpu(at::TensorList xs, const at::Tensor& weights) {
  const MixedSumLayout l = mixed_sum_layout(xs, weights);
  TORCH_CHECK_VALUE(l.xs[0].device().is_cpu(), "mixed_sum: CPU kernel called with ", l.xs[0].device());
  at::Tensor out = at::empty(l.xs[0].sizes(), l.xs[0].options().memory_format(at::MemoryFormat::Contiguous));
  advise_huge_pages(out);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, out.scalar_type(), "mixed_sum_cpu",
                                  [&] { forward_kernel<scalar_t>(l, weights, out); });
  return out;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> mixed_sum_backward_cpu(
    const at::Tensor& grad, at::TensorList xs, const at::Tensor& weights,
    const c10::List<bool>& xs_need_grad, bool weights_need_grad) {
  const MixedSumLayout l = mixed_sum_layout(xs, weights);
  mixed_sum_backward_check(grad, l, xs_need_grad);
  const at::Tensor g = grad.contiguous();
  // The requested input gradients as few allocations (fresh_pages.h says why), undefined elsewhere.
  int64_t requested = 0;
  for (int64_t k = 0; k < l.K; ++k) requested += xs_need_grad.get(k);
  std::vector<at::Tensor> fresh = fresh_outputs(requested, g.sizes(), g.options());
  std::vector<at::Tensor> grad_xs(l.K);
  for (int64_t k = 0, j = 0; k < l.K; ++k)
    if (xs_need_grad.get(k)) grad_xs[k] = fresh[j++];
  for (const auto& t : fresh) advise_huge_pages(t);
  at::Tensor grad_w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "mixed_sum_backward_cpu", [&] {
    backward_kernel<scalar_t>(g, l, weights, grad_xs, weights_need_grad ? &grad_w : nullptr);
  });
  mark_unrequested(grad_xs, g.options());
  if (!grad_w.defined()) grad_w = at::empty({0}, weights.options());
  return {grad_xs, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(mednns_fast, CPU, m) {
  m.impl("mixed_sum", &mixed_sum_cpu);
  m.impl("mixed_sum_backward", &mixed_sum_backward_cpu);
}

}  // namespace mednns_fast
