// CPU kernels of mixed_sum: one read of every input and one write of the output (forward); one read
// of grad and the inputs, one write of every needed input gradient (backward).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "cpu/fresh_pages.h"
#include "cpu/vec32.h"
#include "cpu/vectorize.h"
#include "mixed_common.h"

namespace mednns_fast {
namespace {

// Work is split into chunks that never cross a row, so each chunk has one weight row. Chunks are a
// fixed size, which keeps the weight-gradient reduction order (and result) independent of threads.
constexpr int64_t kChunk = 1 << 15;
// Backward: the unit of the weight-gradient partial sums (their order fixes the result); with K other than 8,
// a block of grad stays in L1 while the groups of candidates stream past it.
constexpr int64_t kGradBlock = 1024;
// Forward: vectors of accumulators that stay in registers across all candidates (an even number: loads and
// stores go two vectors at a time). Eight (256 bytes of each input per step) ran the K=8 float32 forward at
// 1-16 MiB per tensor faster than four in 18 of 20 interleaved size-runs (median ~5%, machine A, loaded);
// sixteen gained nothing.
constexpr int64_t kTileVecs = 8;

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

// The hot loops (cpu/mixed_kernels.h), portable: compiled per x86-64 level, half and bfloat16 converted with
// integer operations.
namespace portable {
#define MEDNNS_FAST_MIXED_TARGET MEDNNS_FAST_MULTIVERSION
#include "cpu/mixed_kernels.h"
#undef MEDNNS_FAST_MIXED_TARGET
}  // namespace portable

#if defined(__x86_64__) && defined(__GNUC__)
#define MEDNNS_FAST_HAVE_F16C 1
// The same loops for float16 with the F16C conversions (vcvtph2ps / vcvtps2ph, round to nearest even), compiled
// for F16C + AVX2 + FMA whatever the build's -march, and run only where the CPU has all three (use_f16c), so
// the library still loads and runs on x86-64 CPUs without them. Results equal the portable loops' bit for bit
// (the same float32 arithmetic; both conversions are exact or round to nearest even, overflow to infinity)
// except for the payload of a NaN produced from a NaN input: F16C keeps its high bits, the portable store
// writes c10's 0x7E00.
namespace f16c {
#define MEDNNS_FAST_F16C_TARGET __attribute__((target("f16c,avx2,fma"), always_inline))
MEDNNS_FAST_F16C_TARGET inline vec_t<float> load_wide(const c10::Half* p) {
  return (vec_t<float>)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
MEDNNS_FAST_F16C_TARGET inline void store_narrow(c10::Half* p, const vec_t<float>& v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph((__m256)v, _MM_FROUND_TO_NEAREST_INT));
}
MEDNNS_FAST_F16C_TARGET inline void load_wide2(const c10::Half* p, vec_t<float>& a, vec_t<float>& b) {
  a = load_wide(p);
  b = load_wide(p + kLanes<float>);
}
MEDNNS_FAST_F16C_TARGET inline void store_narrow2(c10::Half* p, const vec_t<float>& a, const vec_t<float>& b) {
  store_narrow(p, a);
  store_narrow(p + kLanes<float>, b);
}
#undef MEDNNS_FAST_F16C_TARGET
#define MEDNNS_FAST_MIXED_TARGET __attribute__((target("f16c,avx2,fma")))
#include "cpu/mixed_kernels.h"
#undef MEDNNS_FAST_MIXED_TARGET
}  // namespace f16c
#else
#define MEDNNS_FAST_HAVE_F16C 0
namespace f16c = portable;
#endif

// Whether this call's float16 loops use F16C: where the CPU has F16C, AVX2 and FMA, unless
// MEDNNS_FAST_F16C=0 (read at every call, so tests and benchmarks can run both paths in one process).
template <typename scalar_t>
bool use_f16c() {
  if constexpr (!std::is_same_v<scalar_t, c10::Half> || !MEDNNS_FAST_HAVE_F16C) {
    return false;
  } else {
    static const bool supported = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2") &&
                                  __builtin_cpu_supports("fma");
    return supported && detail::switched_on("MEDNNS_FAST_F16C", true);
  }
}

// Calls kernel(std::bool_constant<use_f16c<scalar_t>()>), instantiating the F16C side only for float16.
template <typename scalar_t, typename Kernel>
void with_loops(const Kernel& kernel) {
  if constexpr (std::is_same_v<scalar_t, c10::Half>) {
    if (use_f16c<scalar_t>()) return kernel(std::true_type{});
  }
  kernel(std::false_type{});
}

template <typename scalar_t, bool kF16c>
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
        if constexpr (kF16c) {
          f16c::weighted_sum(o, x.data(), wa.data(), active, n);
        } else {
          portable::weighted_sum(o, x.data(), wa.data(), active, n);
        }
      }
    }
  });
}

template <typename scalar_t, bool kF16c>
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
  // Every input's gradient and the weights' requested (DARTS search): candidates go eight, then four at a time.
  const bool every_gradient = grad_w && std::all_of(gxp.begin(), gxp.end(), [](scalar_t* p) { return p; });
  // Per-chunk partial dot products, reduced in a fixed order afterwards.
  std::vector<double> partial(grad_w ? grid.count() * K : 0, 0.0);
  std::vector<char> prefault(K, 0);  // per input gradient: carved from reused heap memory or not
  for (int64_t k = 0; k < K; ++k) prefault[k] = grad_xs[k].defined() && should_prefault(grad_xs[k]);
  at::parallel_for(0, grid.count(), 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r = grid.row(c), chunk_bytes = (grid.end(c) - grid.begin(c)) * sizeof(scalar_t);
      for (int64_t k = 0; k < K; ++k)
        if (prefault[k]) prefault_for_write(gxp[k] + r * l.inner + grid.begin(c), chunk_bytes);
      const acc_t* wr = w.data() + (l.per_row_weights ? r * K : 0);
      for (int64_t b = grid.begin(c); b < grid.end(c); b += kGradBlock) {
        const int64_t n = std::min(kGradBlock, grid.end(c) - b);
        const scalar_t* g = gp + r * l.inner + b;
        int64_t k = 0;
        scalar_t* gx[8];
        const scalar_t* x[8];
        // candidates k .. k + N - 1 of this block at once (N: a std::integral_constant)
        const auto gradients = [&](auto N) {
          for (int64_t j = 0; j < N; ++j) {
            gx[j] = gxp[k + j] + r * l.inner + b;
            x[j] = xp[k + j] + r * l.row_stride[k + j] + b;
          }
          if constexpr (kF16c) {
            f16c::gradients_n<N>(g, n, gx, wr + k, x, partial.data() + c * K + k);
          } else {
            portable::gradients_n<N>(g, n, gx, wr + k, x, partial.data() + c * K + k);
          }
        };
        for (; every_gradient && k + 8 <= K; k += 8) gradients(std::integral_constant<int, 8>{});
        for (; every_gradient && k + 4 <= K; k += 4) gradients(std::integral_constant<int, 4>{});
        for (; k < K; ++k) {
          const scalar_t* xk = xp[k] + r * l.row_stride[k] + b;
          if constexpr (kF16c) {
            if (gxp[k]) f16c::scaled_copy(gxp[k] + r * l.inner + b, g, wr[k], n);
            if (grad_w) partial[c * K + k] += f16c::dot(xk, g, n);
          } else {
            if (gxp[k]) portable::scaled_copy(gxp[k] + r * l.inner + b, g, wr[k], n);
            if (grad_w) partial[c * K + k] += portable::dot(xk, g, n);
          }
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
                                  [&] {
                                    with_loops<scalar_t>([&](auto f16c) {
                                      forward_kernel<scalar_t, decltype(f16c)::value>(l, weights, out);
                                    });
                                  });
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
    with_loops<scalar_t>([&](auto f16c) {
      backward_kernel<scalar_t, decltype(f16c)::value>(g, l, weights, grad_xs, weights_need_grad ? &grad_w : nullptr);
    });
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
