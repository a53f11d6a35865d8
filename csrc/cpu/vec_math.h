// log and exp that the compiler vectorises (std::log and std::exp are library calls it cannot vectorise
// without -ffast-math); use them in loops compiled with MEDNNS_FAST_MULTIVERSION (cpu/vectorize.h).
//
// log(x) = e ln2 + log(m), x = m 2^e with m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(u) with
// u = (m - 1) / (m + 1), |u| <= 0.172, from the odd series 2 (u + u^3/3 + u^5/5 + ...): 5 terms give
// float32 to about 2e-7 relative, 11 terms double to about 4e-16. The argument is guarded: x >= 0 is
// first increased by the smallest normal number (a no-op for every x > 2^24 * that), so log(0) is
// finite and x * log(x) is exactly 0 at x = 0. Negative or non-finite x are not supported (the ops
// reject them before any kernel runs).
//
// Written branch-free on purpose: bit manipulation and integer arithmetic only, so that GCC's
// if-conversion (which refuses float compares and int->float conversions that "could trap") leaves a
// straight-line loop body to vectorise.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

namespace mednns_fast {
namespace vec {

template <typename T>
struct FloatBits;
template <>
struct FloatBits<float> {
  using U = uint32_t;
  static constexpr int kMant = 23;
  static constexpr int kBias = 127;
  static constexpr U kSqrt2Mant = 0x3504f3u;  // mantissa bits of sqrt(2)
  static constexpr float kExpMin = -87.0f;     // exp of anything below is taken as 0
  static constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.42860676533018704e-6f;
};
template <>
struct FloatBits<double> {
  using U = uint64_t;
  static constexpr int kMant = 52;
  static constexpr int kBias = 1023;
  static constexpr U kSqrt2Mant = 0x6a09e667f3bcdull;
  static constexpr double kExpMin = -708.0;
  static constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
};

template <typename T>
inline __attribute__((always_inline)) T log(T x) {
  using B = FloatBits<T>;
  using U = typename B::U;
  constexpr int kMant = B::kMant;
  constexpr int kTop = sizeof(U) * 8 - 1;
  x += std::numeric_limits<T>::min();
  U bits;
  std::memcpy(&bits, &x, sizeof bits);
  const U mant = bits & ((U(1) << kMant) - 1);
  // big = 1 when the mantissa exceeds sqrt(2): then m is halved and the exponent raised by one.
  const U big = (B::kSqrt2Mant - mant) >> kTop;
  const U one = static_cast<U>(B::kBias) << kMant;
  const U m_bits = mant | (one - (big << kMant));
  T m;
  std::memcpy(&m, &m_bits, sizeof m);
  // int32 exponent: int32 -> float/double converts in vector registers on every x86 level.
  const int32_t e = static_cast<int32_t>((bits >> kMant) + big) - B::kBias;
  const T u = (m - T(1)) / (m + T(1));
  const T u2 = u * u;
  T s;
  if constexpr (sizeof(T) == 4) {
    s = T(1) + u2 * (T(1.0 / 3) + u2 * (T(1.0 / 5) + u2 * (T(1.0 / 7) + u2 * T(1.0 / 9))));
  } else {
    s = T(1.0 / 19) + u2 * T(1.0 / 21);
    s = T(1.0 / 17) + u2 * s;
    s = T(1.0 / 15) + u2 * s;
    s = T(1.0 / 13) + u2 * s;
    s = T(1.0 / 11) + u2 * s;
    s = T(1.0 / 9) + u2 * s;
    s = T(1.0 / 7) + u2 * s;
    s = T(1.0 / 5) + u2 * s;
    s = T(1.0 / 3) + u2 * s;
    s = T(1) + u2 * s;
  }
  return static_cast<T>(e) * T(0.693147180559945309417232121458176568) + T(2) * u * s;
}

// x < limit ? a : b for x, limit >= 0 (not NaN; -0.0 is 0), by comparing and blending bit patterns: a
// float compare "could trap", which makes GCC keep a branch and give up vectorising.
template <typename T>
inline __attribute__((always_inline)) T select_below(T x, T limit, T a, T b) {
  using U = typename FloatBits<T>::U;
  U xb, lb, ab, bb;
  std::memcpy(&xb, &x, sizeof xb);
  std::memcpy(&lb, &limit, sizeof lb);
  std::memcpy(&ab, &a, sizeof ab);
  std::memcpy(&bb, &b, sizeof bb);
  xb &= ~(U(1) << (sizeof(U) * 8 - 1));  // -0.0 counts as 0
  const U mask = U(0) - static_cast<U>(xb < lb);  // all ones when x < limit
  const U rb = (ab & mask) | (bb & ~mask);
  T r;
  std::memcpy(&r, &rb, sizeof r);
  return r;
}

// exp(x) for x <= 0 (a softmax's shifted logits), exactly 0 below kExpMin (so -inf gives 0).
// x = n ln2 + r with n = round(x / ln2) (by the add-a-magic-number trick, which also leaves n in the low
// bits), |r| <= ln2 / 2 (ln2 split in two for an exact n ln2), exp(r) by its Taylor series (7 terms for
// float, 13 for double: below 1 ulp), times 2^n built from bits.
template <typename T>
inline __attribute__((always_inline)) T exp_nonpositive(T x) {
  using B = FloatBits<T>;
  using U = typename B::U;
  constexpr int kMant = B::kMant;
  const T neg = -x;
  const T xc = select_below(neg, -B::kExpMin, x, B::kExpMin);  // clamp: 2^n stays a normal number
  const T magic = T(1.5) * static_cast<T>(U(1) << kMant);
  const T shifted = xc * T(1.44269504088896340735992468100189214) + magic;
  const T n = shifted - magic;
  U sb;
  std::memcpy(&sb, &shifted, sizeof sb);
  U mb;
  std::memcpy(&mb, &magic, sizeof mb);
  const U scale_bits = (sb - mb + static_cast<U>(B::kBias)) << kMant;  // 2^n (n >= -126 / -1022)
  T scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  const T r = (xc - n * B::kLn2Hi) - n * B::kLn2Lo;
  constexpr int kTerms = sizeof(T) == 4 ? 7 : 13;
  T p = T(1);
  for (int m = kTerms; m >= 1; --m) p = T(1) + p * r / T(m);
  return select_below(neg, -B::kExpMin, p * scale, T(0));
}

}  // namespace vec
}  // namespace mednns_fast
