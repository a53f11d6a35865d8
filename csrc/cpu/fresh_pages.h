// Fresh outputs: a memory-bound op that returns a new multi-megabyte tensor spends much of its time faulting
// the output's pages in. Two remedies, each set by an environment variable read at every call (so a benchmark
// can time every combination in one run):
// - prefault_for_write (on by default; MEDNNS_FAST_PREFAULT=0 turns it off): fault in the pages a thread is
//   about to write with one call (MADV_POPULATE_WRITE, Linux 5.14) instead of one trap per 4 KiB page inside
//   the write loop; the same pages, the same zeroing by the kernel. Where the call is unsupported it fails
//   and the write loop faults as before.
// - advise_huge_pages (off by default; MEDNNS_FAST_HUGE_PAGES=1 turns it on): ask Linux for transparent huge
//   pages on the 2 MiB-aligned interior of the buffer before its first touch (one fault per 2 MiB). It
//   changes the page size, an allocation condition other code does not get; faster by the median, with
//   stalls of 3-10x on the benchmark VM (docs/architecture.md says what we know of their cause).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace mednns_fast {

namespace detail {
// "0" is off, any other value on, unset is `fallback`.
inline bool switched_on(const char* variable, bool fallback) {
  const char* v = std::getenv(variable);
  return v == nullptr ? fallback : std::strcmp(v, "0") != 0;
}
}  // namespace detail

inline void advise_huge_pages(const at::Tensor& fresh) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(fresh.data_ptr());
  const uintptr_t end = begin + fresh.nbytes();
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1), last = end & ~(kHuge - 1);
  if (last > first + kHuge && detail::switched_on("MEDNNS_FAST_HUGE_PAGES", false))
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)fresh;
#endif
}

namespace detail {
// Whether every page that [p, p + bytes) touches is resident (mincore reads the page table: one system call
// per 4,096 pages). False where it cannot tell.
inline bool all_resident(const void* p, size_t bytes) {
#if defined(__linux__)
  static const uintptr_t kPage = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  constexpr uintptr_t kPiece = 4096;  // pages asked about per mincore call
  unsigned char resident[kPiece];
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(kPage - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  for (uintptr_t a = begin; a < end; a += kPiece * kPage) {
    const uintptr_t len = std::min<uintptr_t>(kPiece * kPage, end - a), pages = (len + kPage - 1) / kPage;
    if (mincore(reinterpret_cast<void*>(a), len, resident) != 0 ||
        !std::all_of(resident, resident + pages, [](unsigned char r) { return r & 1; }))
      return false;
  }
  return true;
#else
  (void)p;
  (void)bytes;
  return false;
#endif
}
}  // namespace detail

// Whether a kernel should prefault the parts of `fresh` it writes: only outputs large enough to have come
// from a fresh mapping (smaller ones are usually reused heap memory, already resident), and only where some
// page is not resident yet. Reused heap memory is checked once per call here: a check per chunk and output
// (mincore on 32 pages at a time) cost 5-10% of a K=8 backward at 4-8 MiB per tensor with every page resident.
inline bool should_prefault(const at::Tensor& fresh) {
  constexpr size_t kMinBytes = size_t(1) << 20;
  return fresh.nbytes() >= kMinBytes && detail::switched_on("MEDNNS_FAST_PREFAULT", true) &&
         !detail::all_resident(fresh.data_ptr(), fresh.nbytes());
}

// `count` fresh outputs of one shape for one call (e.g. the K input gradients of a backward), carved out of a
// few allocations of up to 32 MiB rather than allocated one by one. Each output has its own storage (nothing
// aliases); an allocation returns to the allocator when the last output carved from it dies. Why: glibc
// serves a request above its mmap threshold with a fresh mapping, and on freeing one raises the threshold to
// that size (up to 32 MiB on 64-bit) and the heap's trim threshold to twice it. Outputs of a few MiB
// allocated one by one keep both thresholds at one output's size, so freeing a call's outputs shrinks the
// heap (how much depends on the order the caller frees them in) and the next call faults the pages in again:
// at 2 MiB per output, twice the page faults of Inductor's code for the same sum. A larger allocation raises
// the thresholds to its size at the first call; from then on a call's outputs reuse heap memory whatever the
// free order. Outputs of 16 MiB or more are allocated one by one, as before (above 32 MiB glibc maps every
// allocation afresh anyway).
inline std::vector<at::Tensor> fresh_outputs(int64_t count, at::IntArrayRef sizes, const at::TensorOptions& options) {
  constexpr int64_t kMaxBlockBytes = (int64_t(32) << 20) - (int64_t(64) << 10);  // under glibc's 32 MiB cap
  constexpr int64_t kAlign = 64;                                                  // as c10's CPU allocator
  const int64_t bytes = c10::multiply_integers(sizes) * static_cast<int64_t>(options.dtype().itemsize());
  const int64_t stride = (bytes + kAlign - 1) / kAlign * kAlign;
  const int64_t per_block = stride > 0 ? std::max<int64_t>(1, kMaxBlockBytes / stride) : count;
  std::vector<at::Tensor> outs;
  outs.reserve(count);
  for (int64_t first = 0; first < count; first += per_block) {
    const int64_t n = std::min(per_block, count - first);
    if (n == 1) {
      outs.push_back(at::empty(sizes, options));
      continue;
    }
    const at::Tensor block = at::empty({n * stride}, options.dtype(at::kByte));
    uint8_t* base = block.data_ptr<uint8_t>();
    for (int64_t j = 0; j < n; ++j)
      outs.push_back(at::from_blob(base + j * stride, sizes, [keep = block.storage()](void*) {}, options));
  }
  return outs;
}

// Fault in, writable, every page that [p, p + bytes) touches and that is not resident yet. Called per chunk
// right before the chunk is written, so the zeroed pages are still in cache when the kernel's stores arrive.
// The range is rounded out to whole pages; those pages hold bytes of the same allocation, so they are mapped.
inline void prefault_for_write(const void* p, size_t bytes) {
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14 value, for older C library headers
#endif
  static const uintptr_t kPage = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  constexpr uintptr_t kPiece = 256;  // pages asked about per mincore call
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(kPage - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  // Reused heap memory is already resident, and populating it anyway walks every page (~0.2 us each: ~1 ms
  // per 16 MiB): only pieces with a page not yet resident are populated (mincore reads the page table).
  unsigned char resident[kPiece];
  for (uintptr_t a = begin; a < end; a += kPiece * kPage) {
    const uintptr_t len = std::min<uintptr_t>(kPiece * kPage, end - a), pages = (len + kPage - 1) / kPage;
    if (mincore(reinterpret_cast<void*>(a), len, resident) == 0 &&
        std::all_of(resident, resident + pages, [](unsigned char r) { return r & 1; }))
      continue;
    madvise(reinterpret_cast<void*>(a), len, MADV_POPULATE_WRITE);
  }
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace mednns_fast
