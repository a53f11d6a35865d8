// Hot CPU loops are compiled for several x86-64 levels and picked at load time (GCC function
// multi-versioning), so a portable build still runs AVX2/AVX-512 code where the CPU has it.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MEDNNS_FAST_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MEDNNS_FAST_MULTIVERSION
#endif
