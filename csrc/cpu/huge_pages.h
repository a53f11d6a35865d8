// Fresh multi-megabyte outputs cost more to fault in (4 KiB at a time) than to write: ask Linux for
// transparent huge pages on the 2 MiB-aligned interior of such a buffer before its first touch.
// A hint only: where THP is off or unsupported nothing changes. MEDNNS_FAST_HUGE_PAGES=0 in the
// environment turns it off (read at every call, so a benchmark can time both allocation policies in one run).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mednns_fast {

inline bool huge_pages_enabled() {
  const char* v = std::getenv("MEDNNS_FAST_HUGE_PAGES");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

inline void advise_huge_pages(const at::Tensor& fresh) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(fresh.data_ptr());
  const uintptr_t end = begin + fresh.nbytes();
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1), last = end & ~(kHuge - 1);
  if (last > first + kHuge && huge_pages_enabled()) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)fresh;
#endif
}

}  // namespace mednns_fast
