// The hot loops of mixed_sum's CPU kernels, included twice by cpu/mixed.cpp (so no include guard): once in
// namespace `portable`, each loop compiled per x86-64 level (MEDNNS_FAST_MIXED_TARGET is
// MEDNNS_FAST_MULTIVERSION) with vec32.h's loads and stores, which convert half and bfloat16 with integer
// operations; once in namespace `f16c` (x86-64 with GCC or Clang), compiled for F16C + AVX2 + FMA, where the
// namespace's own load_wide2/store_narrow2 for c10::Half convert with the F16C instructions. Only the float16
// instances of the second copy are used, chosen at run time (cpu/mixed.cpp: use_f16c). The arithmetic is the
// same text in both copies, in float32 for half types.
// Expects: kLanes, vec_t (cpu/vec32.h), load_wide2 and store_narrow2 visible, MEDNNS_FAST_MIXED_TARGET defined.

// out[i] = sum_k w[k] * x[k][i] over n elements, k = 0, 1, ... for every element as in the reference: the
// hot loop, compiled per x86-64 level. A tile of kTileVecs vectors of accumulators stays in registers while
// all K inputs are read side by side, so K memory streams are in flight at once (reading one input after
// the other leaves one stream, whose prefetch restarts at every page).
template <typename scalar_t, typename acc_t>
MEDNNS_FAST_MIXED_TARGET void weighted_sum(scalar_t* __restrict__ out, const scalar_t* const* x, const acc_t* w,
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

// gx[i] = w * g[i] over n elements (an input's gradient).
template <typename scalar_t, typename acc_t>
MEDNNS_FAST_MIXED_TARGET void scaled_copy(scalar_t* __restrict__ gx, const scalar_t* __restrict__ g, acc_t w,
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
MEDNNS_FAST_MIXED_TARGET double dot(const scalar_t* x, const scalar_t* g, int64_t n) {
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

// N candidates of one block at once: their input gradients gx[j][i] = w[j] * g[i] written and their dot
// products with g accumulated in registers, every vector of g loaded once for all N. With N = 8 (K = 8, the
// DARTS edge) all 2K + 1 memory streams advance together, as in Inductor's fused backward loop; going four
// candidates at a time over a 4 KiB block of g (then the next four over the same block, from L1) ran the
// streams in bursts of one page each and lost to that loop at 4-8 MiB per tensor. Per candidate, the dot
// product sums in the same order whatever N is.
template <int N, typename scalar_t, typename acc_t>
MEDNNS_FAST_MIXED_TARGET void gradients_n(const scalar_t* __restrict__ g, int64_t n, scalar_t* const* gx,
                                          const acc_t* w, const scalar_t* const* x, double* dots) {
  constexpr int64_t L = kLanes<acc_t>;
  vec_t<acc_t> acc[N] = {}, ga, gb, xa, xb;
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    load_wide2(g + i, ga, gb);
    for (int64_t j = 0; j < N; ++j) {
      store_narrow2(gx[j] + i, w[j] * ga, w[j] * gb);
      load_wide2(x[j] + i, xa, xb);
      acc[j] += xa * ga;
      acc[j] += xb * gb;
    }
  }
  for (int64_t j = 0; j < N; ++j) {
    double s = 0;
    for (int64_t t = i; t < n; ++t) {
      gx[j][t] = static_cast<scalar_t>(w[j] * static_cast<acc_t>(g[t]));
      s += static_cast<acc_t>(x[j][t]) * static_cast<acc_t>(g[t]);
    }
    for (int64_t l = 0; l < L; ++l) s += acc[j][l];
    dots[j] += s;
  }
}
