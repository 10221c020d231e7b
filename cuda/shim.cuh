// One kernel source, two targets.
//
// Every kernel in cuda/*.cu is "one element per thread, global atomics, no shared memory, no
// barriers, no warp intrinsics", written with GPUCOPS_FOR_EACH over its elements. Compiled by
// NVRTC/nvcc it is a grid-stride loop; compiled by g++ for the host (the CPU fallback and what CI
// runs) the same text is a plain loop, parallel under OpenMP, and the atomics are GCC builtins.
// Only `long long`, `unsigned long long`, `int`, `signed char` (a torch bool), `float` and
// `double` appear in kernel signatures, so no system header is needed on either side.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

#define GPUCOPS_FOR_EACH(i, n)                                                       \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// Heavy items (a whole tile greedy each): the same grid-stride loop.
#define GPUCOPS_FOR_EACH_HEAVY(i, n) GPUCOPS_FOR_EACH(i, n)

__device__ __forceinline__ unsigned long long gpucops_double_bits(double x) {
    return (unsigned long long)__double_as_longlong(x);
}

__device__ __forceinline__ void gpucops_atomic_max(unsigned long long* address,
                                                   unsigned long long value) {
    atomicMax(address, value);
}

__device__ __forceinline__ void gpucops_set_flag(int* address) { atomicExch(address, 1); }

// returns the value before the addition
__device__ __forceinline__ long long gpucops_atomic_add(long long* address, long long value) {
    return (long long)atomicAdd((unsigned long long*)address, (unsigned long long)value);
}

#else  // host build

#include <cstring>

#define __global__
#define __device__
#define __forceinline__ inline

#ifdef _OPENMP
// Small launches (late rounds, small graphs) run on one thread: a parallel region costs more
// than their work, and spinning threads hurt a busy machine.
#define GPUCOPS_PRAGMA(x) _Pragma(#x)
#define GPUCOPS_FOR_EACH(i, n)                                           \
    GPUCOPS_PRAGMA(omp parallel for schedule(static) if ((n) > 16384)) \
    for (long long i = 0; i < (n); ++i)
// Heavy items of uneven work (a whole tile greedy each): parallel from two items on, handed out
// one by one as threads come free.
#define GPUCOPS_FOR_EACH_HEAVY(i, n)                                  \
    GPUCOPS_PRAGMA(omp parallel for schedule(dynamic, 1) if ((n) > 1)) \
    for (long long i = 0; i < (n); ++i)
#else
#define GPUCOPS_FOR_EACH(i, n) for (long long i = 0; i < (n); ++i)
#define GPUCOPS_FOR_EACH_HEAVY(i, n) GPUCOPS_FOR_EACH(i, n)
#endif

inline unsigned long long gpucops_double_bits(double x) {
    unsigned long long bits;
    std::memcpy(&bits, &x, sizeof bits);
    return bits;
}

inline void gpucops_atomic_max(unsigned long long* address, unsigned long long value) {
    unsigned long long current = __atomic_load_n(address, __ATOMIC_RELAXED);
    while (current < value && !__atomic_compare_exchange_n(address, &current, value, true,
                                                           __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

inline void gpucops_set_flag(int* address) { __atomic_store_n(address, 1, __ATOMIC_RELAXED); }

inline long long gpucops_atomic_add(long long* address, long long value) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}

#endif
