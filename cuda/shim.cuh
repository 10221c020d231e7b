// One kernel source, two targets.
//
// Every kernel in cuda/*.cu is "one element per thread, global atomics, no shared memory, no
// barriers, no warp intrinsics", written with GPUCOPS_FOR_EACH over its elements. Compiled by
// NVRTC/nvcc it is a grid-stride loop; compiled by g++ for the host (the CPU fallback and what CI
// runs) the same text is a plain loop, parallel under OpenMP, and the atomics are GCC builtins.
//
// One exception, a warp per item (GPUCOPS_FOR_EACH_WARP): the item's code is warp-uniform (every
// lane computes the same values), and its parallel parts are phases, GPUCOPS_LANES(lane) { … },
// in which lane l reads what earlier phases wrote and writes only what no other lane touches in
// that phase; a phase ends with the warp's barrier (__syncwarp), which also makes its writes
// visible to every lane. On the host a phase is a loop over the 32 lanes, so the same text
// gives the same results whatever order the lanes run in (the order builds reverse and shuffle
// it). A phase's body must not `break` or `return` (the barrier would be skipped). And since a
// warp's lanes may drift apart between barriers (independent thread scheduling), the uniform code
// may read only what the phase after it does not write — a lane still reading it could see the
// new value. A host build that runs uniform code once cannot catch that; the lanes-as-threads
// build (GPUCOPS_LANE_THREADS, below) under ThreadSanitizer does.
// Only `long long`, `unsigned long long`, `int`, `signed char` (a torch bool), `float` and
// `double` appear in kernel signatures, so no system header is needed on either side.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

#define GPUCOPS_FOR_EACH(i, n)                                                       \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// Heavy items (a whole tile greedy each): the same grid-stride loop.
#define GPUCOPS_FOR_EACH_HEAVY(i, n) GPUCOPS_FOR_EACH(i, n)

// A warp per item: the grid-stride loop over warps (thread blocks of a multiple of 32 threads).
#define GPUCOPS_FOR_EACH_WARP(i, n)                                                        \
    for (long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; i < (n); \
         i += ((long long)blockDim.x * gridDim.x) >> 5)

// A phase of the warp's lanes: the body once as this thread's lane, then the warp's barrier.
#define GPUCOPS_LANES(lane)                                                      \
    for (int lane = (int)(threadIdx.x & 31), gpucops_once = 1; gpucops_once; \
         gpucops_once = 0, __syncwarp())

#define GPUCOPS_CHAIN(tile, what, n) ((void)0)
#define GPUCOPS_CHAIN_TILE(tile) ((void)0)
#define GPUCOPS_LANE_STEP(lane) ((void)0)

__device__ __forceinline__ unsigned long long gpucops_double_bits(double x) {
    return (unsigned long long)__double_as_longlong(x);
}

__device__ __forceinline__ double gpucops_double_from_bits(unsigned long long bits) {
    return __longlong_as_double((long long)bits);
}

__device__ __forceinline__ void gpucops_atomic_max(unsigned long long* address,
                                                   unsigned long long value) {
    atomicMax(address, value);
}

__device__ __forceinline__ void gpucops_set_flag(int* address) { atomicExch(address, 1); }

// a read of a word other threads may be writing with atomics
__device__ __forceinline__ unsigned long long gpucops_load(const unsigned long long* address) {
    return *(const volatile unsigned long long*)address;
}

// returns the value before the addition
__device__ __forceinline__ long long gpucops_atomic_add(long long* address, long long value) {
    return (long long)atomicAdd((unsigned long long*)address, (unsigned long long)value);
}

#else  // host build

#include <cstring>

#if defined(GPUCOPS_LANE_THREADS) && !defined(GPUCOPS_ORDER_THREADS)
#error "GPUCOPS_LANE_THREADS runs a launch's threads as lanes: it needs GPUCOPS_ORDER_THREADS"
#endif

#ifdef GPUCOPS_COUNT_CHAIN
// The tile pre-pass's dependent steps, counted per tile (benchmarks/prepass_chain.py): five
// counters a tile — merges, walks up the tournament tree, list steps, scores, the tile's edges.
inline long long* gpucops_chain = nullptr;
extern "C" void gpucops_set_chain(long long* counters) { gpucops_chain = counters; }
#define GPUCOPS_CHAIN(tile, what, n) (gpucops_chain ? gpucops_chain[5 * (tile) + (what)] += (n) : 0)
// The warp-per-tile greedy counts per lane: a phase's chain is its busiest lane's steps (counter
// 2, summed over phases), its work every lane's (counter 1).
inline thread_local long long gpucops_chain_tile = 0;
inline thread_local long long gpucops_lane_steps[32] = {};
#define GPUCOPS_CHAIN_TILE(tile) (gpucops_chain_tile = (tile))
#define GPUCOPS_LANE_STEP(lane) (gpucops_chain ? ++gpucops_lane_steps[lane] : 0)
inline bool gpucops_phase_done() {
    long long most = 0, all = 0;
    for (long long& steps : gpucops_lane_steps) {
        most = steps > most ? steps : most;
        all += steps;
        steps = 0;
    }
    if (gpucops_chain) {
        gpucops_chain[5 * gpucops_chain_tile + 2] += most;
        gpucops_chain[5 * gpucops_chain_tile + 1] += all;
    }
    return false;
}
#define GPUCOPS_LANES(lane) for (int lane = 0; lane < 32 || gpucops_phase_done(); ++lane)
#else
#define GPUCOPS_CHAIN(tile, what, n) ((void)0)
#define GPUCOPS_CHAIN_TILE(tile) ((void)0)
#define GPUCOPS_LANE_STEP(lane) ((void)0)
#endif

#define __global__
#define __device__
#define __forceinline__ inline
#define GPUCOPS_PRAGMA(x) _Pragma(#x)

#if defined(GPUCOPS_ORDER_REVERSED) || defined(GPUCOPS_ORDER_SHUFFLED) || \
    defined(GPUCOPS_ORDER_THREADS)
// Order-perturbation builds (tests/test_host_orders.py): a GPU runs a launch's items in no fixed
// order, so no kernel's result may depend on it. These builds run every launch's items in
// reverse, in a shuffled order (another each launch), or as a grid-stride loop over several
// real threads released together (GPUCOPS_ORDER_THREADS, also the ThreadSanitizer build's mode),
// and must give the default build's results bit for bit.
#define GPUCOPS_FOR_EACH_HEAVY(i, n) GPUCOPS_FOR_EACH(i, n)
#endif

#if defined(GPUCOPS_ORDER_REVERSED)
#define GPUCOPS_FOR_EACH(i, n) for (long long i = (n) - 1; i >= 0; --i)
#define GPUCOPS_LANES(lane) for (int lane = 31; lane >= 0; --lane)

#elif defined(GPUCOPS_ORDER_SHUFFLED)
inline long long gpucops_gcd(long long a, long long b) {
    while (b) {
        const long long r = a % b;
        a = b;
        b = r;
    }
    return a;
}

// A multiplier coprime to n, another each launch: k ↦ a·(k + 1) mod n permutes [0, n).
inline long long gpucops_shuffle_multiplier(long long n) {
    static unsigned long long launch = 0;
    if (n <= 1) return 1;
    long long a = (long long)((++launch * 0x9E3779B97F4A7C15ULL) % (unsigned long long)n);
    while (gpucops_gcd(a, n) != 1) a = (a + 1) % n;
    return a;
}

#define GPUCOPS_FOR_EACH(i, n)                                                                 \
    for (long long gpucops_k = 0, gpucops_n = (n), gpucops_a = gpucops_shuffle_multiplier(gpucops_n), \
                   i = 0;                                                                      \
         gpucops_k < gpucops_n &&                                                              \
         ((i = (long long)((unsigned __int128)gpucops_a * (gpucops_k + 1) % gpucops_n)), true); \
         ++gpucops_k)
#define GPUCOPS_LANES(lane)                                                            \
    for (int gpucops_l = 0, gpucops_b = (int)gpucops_shuffle_multiplier(32), lane = 0; \
         gpucops_l < 32 && ((lane = gpucops_b * (gpucops_l + 1) % 32), true); ++gpucops_l)

#elif defined(GPUCOPS_ORDER_THREADS)
#include <sched.h>

#include <atomic>

// Every thread of a launch runs the whole kernel, as a GPU's threads do: the launcher
// (tests/kernel_fuzz.py) calls each kernel from several threads at once, each naming its index
// first, and the threads take the items of a grid-stride loop, released together by a barrier
// of std::atomics (which ThreadSanitizer sees).
inline thread_local long long gpucops_thread_index = 0;
inline thread_local long long gpucops_thread_count = 1;
inline std::atomic<long long> gpucops_arrived{0};
inline std::atomic<long long> gpucops_generation{0};

extern "C" void gpucops_set_thread(long long index, long long count) {
#ifdef GPUCOPS_LANE_THREADS
    if (count != 32) __builtin_trap();  // the threads are one warp's lanes: all 32 of them
#endif
    gpucops_thread_index = index;
    gpucops_thread_count = count;
}

inline void gpucops_barrier() {
    const long long generation = gpucops_generation.load(std::memory_order_acquire);
    if (gpucops_arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == gpucops_thread_count) {
        gpucops_arrived.store(0, std::memory_order_relaxed);
        gpucops_generation.fetch_add(1, std::memory_order_acq_rel);
    } else {
        while (gpucops_generation.load(std::memory_order_acquire) == generation) sched_yield();
    }
}

inline long long gpucops_first_item() {
    gpucops_barrier();
    return gpucops_thread_index;
}

#define GPUCOPS_FOR_EACH(i, n) \
    for (long long i = gpucops_first_item(); i < (n); i += gpucops_thread_count)

#ifdef GPUCOPS_LANE_THREADS
// The launch's threads (32 of them) are one warp's lanes: each runs every item of a warp-per-item
// kernel, its uniform code too, as a GPU's lanes do, and a phase ends with a barrier of all of
// them — so ThreadSanitizer sees a uniform read that races the next phase's write, which the
// other host builds (uniform code run once) cannot show.
#define GPUCOPS_FOR_EACH_WARP(i, n) for (long long i = (gpucops_barrier(), 0); i < (n); ++i)
#define GPUCOPS_LANES(lane)                                                  \
    for (int lane = (int)gpucops_thread_index, gpucops_once = 1; gpucops_once; \
         gpucops_once = 0, gpucops_barrier())
#endif

#elif defined(_OPENMP)
// Small launches (late rounds, small graphs) run on one thread: a parallel region costs more
// than their work, and spinning threads hurt a busy machine.
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

// A warp per item: on the host, a heavy item; its phases, loops over the lanes.
#ifndef GPUCOPS_FOR_EACH_WARP
#define GPUCOPS_FOR_EACH_WARP(i, n) GPUCOPS_FOR_EACH_HEAVY(i, n)
#endif
#ifndef GPUCOPS_LANES
#define GPUCOPS_LANES(lane) for (int lane = 0; lane < 32; ++lane)
#endif

inline unsigned long long gpucops_double_bits(double x) {
    unsigned long long bits;
    std::memcpy(&bits, &x, sizeof bits);
    return bits;
}

inline double gpucops_double_from_bits(unsigned long long bits) {
    double x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
}

inline void gpucops_atomic_max(unsigned long long* address, unsigned long long value) {
    unsigned long long current = __atomic_load_n(address, __ATOMIC_RELAXED);
    while (current < value && !__atomic_compare_exchange_n(address, &current, value, true,
                                                           __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

inline void gpucops_set_flag(int* address) { __atomic_store_n(address, 1, __ATOMIC_RELAXED); }

inline unsigned long long gpucops_load(const unsigned long long* address) {
    return __atomic_load_n(address, __ATOMIC_RELAXED);
}

inline long long gpucops_atomic_add(long long* address, long long value) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}

#endif

__device__ __forceinline__ double gpucops_negative_infinity() {
    return gpucops_double_from_bits(0xFFF0000000000000ULL);
}
