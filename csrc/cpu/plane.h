// Padded input planes shared by the CPU window kernels (depthwise convolutions, pools); vectors: cpu/vec32.h.
// Each plane is copied once into a padded buffer that stays in cache while every window slides over it.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/vec32.h"

namespace mednns_fast {

// The kernels compute rows in blocks of kVecs 32-byte vectors (64 bytes) so the accumulators stay in
// registers across all taps.
constexpr int64_t kVecs = 2;
template <typename T>
constexpr int64_t kBlock = kVecs * kLanes<T>;

// A padded plane (padding `pad` on every side) split into `s` column phases of `rows` x `width`: phase p
// holds padded columns p, p + s, ..., so a kernel tap of a stride-s window reads consecutive memory along an
// output row. Each phase row ends with `block` elements of slack, so a vector block may read past the row's
// last column (lanes that are never stored or are masked).
struct PhasedPlane {
  int64_t rows, width, phases;
  PhasedPlane(int64_t H, int64_t W, int64_t pad, int64_t s, int64_t block)
      : rows(H + 2 * pad), width((W + 2 * pad + s - 1) / s + block), phases(s) {}
  int64_t size() const { return phases * rows * width; }
  // Offset of padded (row, col).
  int64_t at(int64_t row, int64_t col) const { return ((col % phases) * rows + row) * width + col / phases; }
};

// Copies plane [H, W] into `buf` laid out as `pp`, padding (and slack) set to `fill`.
template <typename T>
void load_phased(const T* plane, int64_t H, int64_t W, int64_t pad, T fill, const PhasedPlane& pp, T* buf) {
  std::fill(buf, buf + pp.size(), fill);
  const int64_t s = pp.phases;
  for (int64_t p = 0; p < s; ++p) {
    // Phase p holds the input columns x with (x + pad) % s == p, at (x + pad) / s (divisions once per phase).
    const int64_t x0 = ((p - pad) % s + s) % s;
    T* dst = buf + pp.at(pad, x0 + pad);
    for (int64_t y = 0; y < H; ++y, dst += pp.width) {
      const T* src = plane + y * W + x0;
      if (s == 1) {
        std::copy_n(src, W, dst);
      } else {
        for (int64_t i = 0, x = x0; x < W; ++i, x += s) dst[i] = src[i * s];
      }
    }
  }
}

}  // namespace mednns_fast
