// 32-byte GCC/Clang vectors shared by the CPU kernels, with loads that widen bfloat16 and half inputs to the
// accumulation type (float) and stores that narrow back, rounding as c10 does; load_wide2/store_narrow2 move
// two vectors' worth at once, for elementwise loops. Loads and stores go through memcpy: rows need not be
// aligned.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

// The vectors live in registers of inlined helpers; GCC's note that passing them by value would change the
// ABI without AVX is irrelevant here.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace mednns_fast {

template <typename T>
struct Vec32 {
  typedef T type __attribute__((vector_size(32)));
};
template <typename T>
using vec_t = typename Vec32<T>::type;
template <typename T>
constexpr int64_t kLanes = 32 / static_cast<int64_t>(sizeof(T));

template <typename T>
inline vec_t<T> load(const T* p) {
  vec_t<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void store(T* p, const vec_t<T>& v) { std::memcpy(p, &v, sizeof(v)); }

// One vector of the accumulation type: kLanes<at::opmath_type<T>> elements of T.
template <typename T>
using wide_t = vec_t<at::opmath_type<T>>;

namespace detail {
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));

// Lanes of a where mask is all ones, else of b (masks are comparison results: 0 or all ones).
inline u32x8 select(u32x8 mask, u32x8 a, u32x8 b) { return (a & mask) | (b & ~mask); }

// IEEE half bits (in the low 16 bits of each lane) to float, exactly. Integer operations only, so the loop
// vectorises (GCC converts _Float16 vectors one lane at a time).
inline vec_t<float> half_to_float(u32x8 h) {
  const u32x8 magnitude = h & 0x7FFFu, sign = (h & 0x8000u) << 16;
  const u32x8 normal = (magnitude << 13) + ((127u - 15u) << 23);  // rebias the exponent
  const u32x8 inf_nan = (magnitude << 13) | 0x7F800000u;           // keeps a NaN's payload
  // Subnormal halves are mantissa * 2^-24: an exact integer-to-float conversion, no float subnormals.
  const vec_t<float> sub = __builtin_convertvector((i32x8)magnitude, vec_t<float>) * 0x1p-24f;
  u32x8 bits = select((u32x8)(magnitude < 0x0400u), (u32x8)sub, normal);
  bits = select((u32x8)(magnitude >= 0x7C00u), inf_nan, bits);
  return (vec_t<float>)(bits | sign);
}

// Float to IEEE half bits, rounded to nearest even as c10::Half does (overflow to infinity, NaN to the quiet
// NaN 0x7E00): scaling |f| by 2^2 and adding a power of two chosen from f's exponent makes the float
// addition round the mantissa at exactly the half-precision position.
inline u32x8 float_to_half(vec_t<float> f) {
  const u32x8 w = (u32x8)f, twice = w + w, sign = w & 0x80000000u;
  const vec_t<float> scaled = ((vec_t<float>)(w & 0x7FFFFFFFu) * 0x1p112f) * 0x1p-110f;
  u32x8 bias = twice & 0xFF000000u;
  bias = select((u32x8)(bias < 0x71000000u), u32x8{} + 0x71000000u, bias);  // no lower than half's subnormals
  const u32x8 bits = (u32x8)((vec_t<float>)((bias >> 1) + 0x07800000u) + scaled);
  const u32x8 magnitude = ((bits >> 13) & 0x7C00u) + (bits & 0x0FFFu);
  return (sign >> 16) | select((u32x8)(twice > 0xFF000000u), u32x8{} + 0x7E00u, magnitude);
}
// The bfloat16 nearest to each float (ties to even; NaN to the quiet NaN 0x7FC0, c10::BFloat16's rule), in the
// high half of each lane.
inline u32x8 bf16_high_bits(vec_t<float> v) {
  const u32x8 u = (u32x8)v, nan = (u32x8)(v != v);  // all ones where NaN
  return select(nan, u32x8{} + 0x7FC00000u, (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
}
}  // namespace detail

template <typename T>
inline wide_t<T> load_wide(const T* p) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    detail::u16x8 h;
    std::memcpy(&h, p, sizeof(h));
    // bfloat16 is the upper half of a float32.
    const detail::u32x8 u = __builtin_convertvector(h, detail::u32x8) << 16;
    return (vec_t<float>)u;  // a vector cast reinterprets the bits
  } else if constexpr (std::is_same_v<T, c10::Half>) {
    detail::u16x8 h;
    std::memcpy(&h, p, sizeof(h));
    return detail::half_to_float(__builtin_convertvector(h, detail::u32x8));
  } else {
    return load(p);
  }
}

template <typename T>
inline void store_narrow(T* p, const wide_t<T>& v) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    const detail::u16x8 h = __builtin_convertvector(detail::bf16_high_bits(v) >> 16, detail::u16x8);
    std::memcpy(p, &h, sizeof(h));
  } else if constexpr (std::is_same_v<T, c10::Half>) {
    const detail::u16x8 h = __builtin_convertvector(detail::float_to_half(v), detail::u16x8);
    std::memcpy(p, &h, sizeof(h));
  } else {
    store(p, v);
  }
}

// Two vectors of the accumulation type from 2 * kLanes<acc> elements, for loops whose work is elementwise (or a
// sum over all elements), so that which element lands in which lane does not matter as long as loads and
// stores agree. bfloat16: 32 bytes hold 16 values, element 2i in the low half of 32-bit lane i and 2i + 1 in
// its high half; a bfloat16 is the high half of a float, so one shift and one mask widen all 16 (a = even
// elements, b = odd), where load_wide takes a zero-extension and a shift per 8. Other types: a = the first
// kLanes elements, b = the next.
template <typename T>
inline void load_wide2(const T* p, wide_t<T>& a, wide_t<T>& b) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    detail::u32x8 u;
    std::memcpy(&u, p, sizeof(u));
    a = (vec_t<float>)(u << 16);
    b = (vec_t<float>)(u & 0xFFFF0000u);
  } else {
    a = load_wide(p);
    b = load_wide(p + kLanes<at::opmath_type<T>>);
  }
}

template <typename T>
inline void store_narrow2(T* p, const wide_t<T>& a, const wide_t<T>& b) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    const detail::u32x8 u = (detail::bf16_high_bits(a) >> 16) | detail::bf16_high_bits(b);
    std::memcpy(p, &u, sizeof(u));
  } else {
    store_narrow(p, a);
    store_narrow(p + kLanes<at::opmath_type<T>>, b);
  }
}

}  // namespace mednns_fast
