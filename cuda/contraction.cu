// Kernels of the batched parallel contraction: the steps of gpucops/solver/backend.py
// (KernelSteps). gpucops/solver/steps.py holds the torch reference of every step, and the tests
// compare them bit for bit; gpucops/solver/rounds.py is the loop that calls them.
#include "shim.cuh"

// Hash coin of (cluster index within its image, round): 1 = centre, 0 = leaf. Integer mixing
// below 2^62, identical to gpucops.solver.steps.coin_is_centre.
__device__ __forceinline__ int gpucops_coin(long long local_index, long long round_index) {
    const long long modulus = 1LL << 31;
    long long x = (local_index * 1103515245LL + (round_index * 2654435LL + 12345LL)) % modulus;
    x = x ^ (x >> 13);
    x = (x * 1664525LL + 1013904223LL) % modulus;
    x = x ^ (x >> 16);
    return (int)((x >> 7) & 1);
}

// min_k row[k] into *best and the lowest k attaining it into *at (+inf costs are forbidden
// classes; an all-+inf row gives class 0).
__device__ __forceinline__ void gpucops_row_min(const double* row, long long width, double* best,
                                                long long* at) {
    *best = row[0];
    *at = 0;
    for (long long k = 1; k < width; ++k) {
        if (row[k] < *best) {
            *best = row[k];
            *at = k;
        }
    }
}

// Each cluster's cheapest class: minimum[c] = min_k costs[c, k], argmin[c] = the lowest k
// attaining it.
extern "C" __global__ void row_min(long long num_rows, long long width, const double* costs,
                                   double* minimum, long long* argmin) {
    GPUCOPS_FOR_EACH(c, num_rows) {
        gpucops_row_min(costs + c * width, width, minimum + c, argmin + c);
    }
}

// Score t = w − p of an edge between clusters u and v with class costs cu, cv (minima mu, mv,
// classes xu, xv): p = 0 where both have the same class, else min_k [(C_u(k) − m_u) + (C_v(k) −
// m_v)] — the margins formed before they are added, as in the sequential reference.
__device__ __forceinline__ double gpucops_score(double w, const double* cu, double mu,
                                                long long xu, const double* cv, double mv,
                                                long long xv, long long num_classes) {
    if (xu == xv) return w;
    double p = (cu[0] - mu) + (cv[0] - mv);
    for (long long k = 1; k < num_classes; ++k) {
        const double value = (cu[k] - mu) + (cv[k] - mv);
        if (value < p) p = value;
    }
    return w - p;
}

// The bits of (float)t for t > 0 under IEEE arithmetic (round to nearest, ties to even; +inf
// above the float range), from t's bits with integer operations alone. A float conversion is not
// enough: CuPy compiles with -ftz=true after the caller's options (cupy/cuda/compiler.py,
// _compile_with_cache_cuda), and NVRTC honours the last -ftz, so the device's conversion
// (cvt.rn.ftz.f32.f64) flushes every t < 2^-126 to 0 where the host and torch keep a subnormal —
// and the picks would differ.
__device__ __forceinline__ unsigned int gpucops_float32_bits(double t) {
    const unsigned long long bits = gpucops_double_bits(t);
    const int exponent = (int)(bits >> 52) - 1023;
    if (exponent > 127) return 0x7F800000u;  // beyond FLT_MAX's exponent: +inf
    const unsigned long long significand = (bits & 0xFFFFFFFFFFFFFULL) | (1ULL << 52);
    // float32 keeps 23 of the 52 fraction bits of a normal result; a subnormal result counts units
    // of 2^-149, so it drops more: 29 bits at exponent −126, one more per step below
    const int drop = exponent >= -126 ? 29 : -97 - exponent;
    if (drop > 54) return 0u;  // below half the smallest subnormal: rounds to 0
    const unsigned long long kept = significand >> drop;
    const unsigned long long rest = significand & ((1ULL << drop) - 1), half = 1ULL << (drop - 1);
    // a normal result adds its biased exponent to the significand (whose implicit bit adds 1);
    // a carry of the rounding moves into the exponent, up to +inf, as in IEEE rounding
    unsigned long long result =
        exponent >= -126 ? ((unsigned long long)(exponent + 126) << 23) + kept : kept;
    if (rest > half || (rest == half && (result & 1))) ++result;
    return (unsigned int)result;
}

// Edge e = (u, v) with score t > 0 bids for being u's and v's pick: key = (float32 bits of t) << 32
// | (0xFFFFFFFF − e), so the max is the largest t, then the lowest e (positive floats order as
// their bits).
__device__ __forceinline__ unsigned long long gpucops_pick_key(long long e, double t) {
    return ((unsigned long long)gpucops_float32_bits(t) << 32) |
           (0xFFFFFFFFULL - (unsigned long long)e);
}

__device__ __forceinline__ void gpucops_bid(long long e, long long u, long long v, double t,
                                            unsigned long long* best) {
    if (t > 0) {
        const unsigned long long key = gpucops_pick_key(e, t);
        gpucops_atomic_max(best + u, key);
        gpucops_atomic_max(best + v, key);
    }
}

// Score every edge, t = w − p (p = 0 where both clusters have the same class, else
// min_k [(C_u(k) − m_u) + (C_v(k) − m_v)]), and let each cluster pick its incident edge of largest
// t > 0: best[c] = max over such edges of (float32 bits of t) << 32 | (0xFFFFFFFF − e); 0 = none.
// best must be zeroed before the launch.
// best[num_clusters], zeroed with the keys, becomes 1 if any t > 0 (the round loop's "anything
// left?", with no reduction of its own; read before written, so a hot word takes few atomics).
// bid = 0: scores and the flag only (a band picks later).
extern "C" __global__ void score_pick(long long num_edges, long long num_classes,
                                      long long num_clusters, long long bid,
                                      const long long* edges, const double* weights,
                                      const double* costs, const double* minimum,
                                      const long long* argmin, double* scores,
                                      unsigned long long* best) {
    GPUCOPS_FOR_EACH(e, num_edges) {
        const long long u = edges[2 * e], v = edges[2 * e + 1];
        const double t =
            gpucops_score(weights[e], costs + u * num_classes, minimum[u], argmin[u],
                          costs + v * num_classes, minimum[v], argmin[v], num_classes);
        scores[e] = t;
        if (t > 0 && !gpucops_load(best + num_clusters))
            gpucops_atomic_max(best + num_clusters, 1ULL);
        if (bid) gpucops_bid(e, u, v, t, best);
    }
}

// The top fraction's cut of each image: ranked holds image b's scores from first[b] to the next
// image's first (the last image's to num_edges), largest first, so its n positive scores are a
// prefix; cut[b] = its m-th score, m = max(1, ⌈fraction · n⌉), or −inf where n = 0 (no band: the
// image keeps its scores). fraction_bits: the double's bits (kernel arguments are integers and
// pointers).
extern "C" __global__ void top_cut(long long num_images, long long num_edges,
                                   long long fraction_bits, const double* ranked,
                                   const long long* first, double* cut) {
    const double fraction = gpucops_double_from_bits((unsigned long long)fraction_bits);
    GPUCOPS_FOR_EACH(b, num_images) {
        const long long start = first[b];
        long long low = start, high = b + 1 < num_images ? first[b + 1] : num_edges;
        while (low < high) {  // the end of the positive prefix
            const long long middle = low + (high - low) / 2;
            if (ranked[middle] > 0)
                low = middle + 1;
            else
                high = middle;
        }
        const long long positive = low - start;
        const double share = fraction * (double)positive;
        long long keep = (long long)share;
        if ((double)keep < share) ++keep;  // ⌈share⌉ for share ≥ 0, with no math header
        if (keep < 1) keep = 1;
        cut[b] = positive > 0 ? ranked[start + keep - 1] : gpucops_negative_infinity();
    }
}

// Picks within the band: edge e bids (as in score_pick) if its score reaches its image's cut.
// best must be zeroed before the launch.
extern "C" __global__ void pick_band(long long num_edges, const long long* edges,
                                     const double* scores, const long long* image,
                                     const double* cut, unsigned long long* best) {
    GPUCOPS_FOR_EACH(e, num_edges) {
        const long long u = edges[2 * e], v = edges[2 * e + 1];
        if (scores[e] >= cut[image[u]]) gpucops_bid(e, u, v, scores[e], best);
    }
}

// Each cluster's picked edge from its largest key: picks[c] = 0xFFFFFFFF − (best[c] & 0xFFFFFFFF),
// −1 where it has none (best[c] = 0).
extern "C" __global__ void unpack_picks(long long num_clusters, const unsigned long long* best,
                                        long long* picks) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const unsigned long long key = best[c];
        picks[c] = key ? (long long)(0xFFFFFFFFULL - (key & 0xFFFFFFFFULL)) : -1LL;
    }
}

// Stars, first pass. For each cluster c with a pick (picks[c] ≥ 0): target[c] = the other end of
// its picked edge, which is marked picked. A leaf joins the centre it picked (root[c] =
// target[c]), and both are marked involved; every other cluster is its own root (root[c] = c).
// involved and picked must hold zeros before the launch.
extern "C" __global__ void star_propose(long long num_clusters, const long long* picks,
                                        const long long* edges, const long long* local_index,
                                        long long round_index, long long* target, long long* root,
                                        int* involved, int* picked) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const long long e = picks[c];
        root[c] = c;
        if (e < 0) {
            target[c] = -1;
            continue;
        }
        const long long other = edges[2 * e] == c ? edges[2 * e + 1] : edges[2 * e];
        target[c] = other;
        gpucops_set_flag(picked + other);
        const bool joins = !gpucops_coin(local_index[c], round_index) &&
                           gpucops_coin(local_index[other], round_index);
        if (joins) {
            root[c] = other;
            gpucops_set_flag(involved + c);
            gpucops_set_flag(involved + other);
        }
    }
}

// Stars, second pass: two clusters outside every star that picked the same edge merge as a pair,
// rooted at the lower index.
extern "C" __global__ void star_pair(long long num_clusters, const long long* picks,
                                     const long long* target, const int* involved,
                                     long long* root) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const long long other = target[c];
        if (other >= 0 && !involved[c] && !involved[other] && picks[other] == picks[c])
            root[c] = other < c ? other : c;
    }
}

// Stars, third pass (free leaves): a cluster with a pick that no cluster picked and that is in no
// star yet joins the cluster it picked if that one is a root (a centre, a pair's root or alone).
// Nobody picked c, so nobody joins c; c picked its target, so the target's root
// is not written here: the pass reads nothing it writes. Every member's pick still leads to its
// root, which the star check's shrink to the best leaf relies on.
extern "C" __global__ void star_free(long long num_clusters, const long long* target,
                                     const int* picked, long long* root) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const long long other = target[c];
        if (other >= 0 && !picked[c] && root[c] == c && root[other] == other) root[c] = other;
    }
}

// ---- The contraction's map (ClusterGraph.contract): two passes around torch's prefix sum. ----

// First pass: is_root[c] = 1 where root[c] = c, else 0, and each image counts its roots
// (per_image zeroed before the launch; integer atomics, so any order gives the same counts).
extern "C" __global__ void root_marks(long long num_clusters, const long long* root,
                                      const long long* image, long long* is_root,
                                      long long* per_image) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const bool own = root[c] == c;
        is_root[c] = own ? 1 : 0;
        if (own) gpucops_atomic_add(per_image + image[c], 1LL);
    }
}

// Second pass, with ordinal the inclusive prefix sum of is_root: mapping[c] = ordinal[root[c]] − 1
// (roots keep their order), and each root's image at its new index.
extern "C" __global__ void root_map(long long num_clusters, const long long* root,
                                    const long long* ordinal, const long long* image,
                                    long long* mapping, long long* root_image) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const long long r = root[c];
        mapping[c] = ordinal[r] - 1;
        if (r == c) root_image[ordinal[c] - 1] = image[c];
    }
}

// ---- Contraction: counting sort into buckets, then deterministic per-bucket sums. ----
// A bucket b holds slot[start[b] .. start[b + 1]); start is the exclusive prefix sum of the
// counts. A slot holds the packed key (secondary[i] << 32) | i of its item i (secondary in
// [0, 2^31), i < 2^32): filling reads secondary[] in item order, so sorting a bucket compares
// one int64 per item in contiguous memory instead of gathering secondary[] at random. Filling uses
// atomics, so the order within a bucket is only fixed by bucket_sort.

__device__ __forceinline__ long long gpucops_slot_item(long long packed) {
    return packed & 0xFFFFFFFFLL;
}

__device__ __forceinline__ long long gpucops_slot_key(long long packed) { return packed >> 32; }

// counts[keys[i]] += 1 for every i with keys[i] ≥ 0 (counts zeroed before the launch).
extern "C" __global__ void bucket_count(long long n, const long long* keys, long long* counts) {
    GPUCOPS_FOR_EACH(i, n) {
        if (keys[i] >= 0) gpucops_atomic_add(counts + keys[i], 1LL);
    }
}

// Put item i in its bucket: slot[start[keys[i]] + --counts[keys[i]]] = (secondary[i] << 32) | i,
// and its payload (when given) beside it. The bucket's count, left by bucket_count, serves as its
// cursor, from the end down (the order inside a bucket is bucket_sort's job), so it ends at zero
// and no second zeroed array is needed.
__device__ __forceinline__ void gpucops_fill(long long i, const long long* keys,
                                             const long long* secondary, const double* payload,
                                             const long long* start, long long* counts,
                                             long long* slot, double* slot_payload) {
    const long long key = keys[i];
    if (key < 0) return;
    const long long s = start[key] + gpucops_atomic_add(counts + key, -1LL) - 1;
    slot[s] = (secondary[i] << 32) | i;
    if (payload) slot_payload[s] = payload[i];
}

// Sort one bucket's packed keys, i.e. by (secondary, item), moving the payloads (when given)
// along: insertion sort for up to 32 items (almost all buckets), a shell sort, O(n^1.3), for the
// few large ones (the edges of big clusters).
__device__ __forceinline__ void gpucops_sort_bucket(long long* items, double* payload,
                                                    long long n) {
    long long gap = 1;
    if (n > 32)
        while (gap < n / 3) gap = 3 * gap + 1;  // Knuth's gaps 1, 4, 13, 40, …
    for (; gap > 0; gap /= 3) {
        for (long long i = gap; i < n; ++i) {
            const long long item = items[i];
            const double value = payload ? payload[i] : 0.0;
            long long j = i;
            for (; j >= gap && item < items[j - gap]; j -= gap) {
                items[j] = items[j - gap];
                if (payload) payload[j] = payload[j - gap];
            }
            items[j] = item;
            if (payload) payload[j] = value;
        }
    }
}

// Fill the buckets (counts as bucket_count left them) — items only, or items with a payload each.
extern "C" __global__ void bucket_fill(long long n, const long long* keys,
                                       const long long* secondary, const long long* start,
                                       long long* counts, long long* slot) {
    GPUCOPS_FOR_EACH(i, n) {
        gpucops_fill(i, keys, secondary, nullptr, start, counts, slot, nullptr);
    }
}

extern "C" __global__ void bucket_fill_payload(long long n, const long long* keys,
                                               const long long* secondary, const double* payload,
                                               const long long* start, long long* counts,
                                               long long* slot, double* slot_payload) {
    GPUCOPS_FOR_EACH(i, n) {
        gpucops_fill(i, keys, secondary, payload, start, counts, slot, slot_payload);
    }
}

// Sort every bucket — items only, or with their payloads (aligned with slot).
extern "C" __global__ void bucket_sort(long long num_buckets, const long long* start,
                                       long long* slot) {
    GPUCOPS_FOR_EACH(b, num_buckets) {
        gpucops_sort_bucket(slot + start[b], nullptr, start[b + 1] - start[b]);
    }
}

// The contraction's edge buckets: sort each with its payloads (the weights), then count its runs
// of equal secondary key — unique[b] = the distinct edges bucket b's cluster will have.
extern "C" __global__ void bucket_sort_runs(long long num_buckets, const long long* start,
                                            long long* slot, double* slot_payload,
                                            long long* unique) {
    GPUCOPS_FOR_EACH(b, num_buckets) {
        const long long first = start[b], last = start[b + 1];
        gpucops_sort_bucket(slot + first, slot_payload + first, last - first);
        long long runs = 0;
        for (long long s = first; s < last; ++s)
            runs += s == first || gpucops_slot_key(slot[s]) != gpucops_slot_key(slot[s - 1]);
        unique[b] = runs;
    }
}

// a and b exchanged (values, or the pointers of an array and its spare)
template <typename T>
__device__ __forceinline__ void gpucops_swap(T& a, T& b) {
    const T kept = a;
    a = b;
    b = kept;
}

// Sort n packed keys (with their payloads, when given) by the warp's lanes: a bitonic network
// over n rounded up to a power of two, the positions from n on read as +∞ — they would never move,
// so they are never touched. A step's pairs are disjoint, split over the lanes. The packed keys
// are distinct, so this and gpucops_sort_bucket order a bucket alike; a GPU's warp pays ~log²n/2
// steps of n/64 pairs a lane where one thread's shell sort pays ~n^1.3 in a row (2,369 items:
// ~5,000 against ~39,000 dependent steps).
__device__ __forceinline__ void gpucops_lanes_sort(long long* items, double* payload,
                                                   long long n) {
    long long size = 1;
    while (size < n) size <<= 1;
    for (long long k = 2; k <= size; k <<= 1) {
        for (long long j = k >> 1; j > 0; j >>= 1) {
            GPUCOPS_LANES(lane) {
                for (long long q = lane; q < size / 2; q += 32) {
                    GPUCOPS_LANE_STEP(lane);
                    // a merge's first step pairs mirrored positions of each block of k, the
                    // others positions j apart — both sort ascending
                    const long long base = q / j * 2 * j, offset = q % j;
                    const long long i = base + offset;
                    const long long partner = j == k >> 1 ? base + k - 1 - offset : i + j;
                    if (partner >= n || items[i] < items[partner]) continue;
                    gpucops_swap(items[i], items[partner]);
                    if (payload) gpucops_swap(payload[i], payload[partner]);
                }
            }
        }
    }
}

// bucket_sort and bucket_sort_runs with a warp per bucket (a GPU's: the largest buckets, the edges
// of big clusters, hold thousands of items); the same results. bucket_sort_runs_warp adds each
// lane's runs into unique (zeroed before the launch).
extern "C" __global__ void bucket_sort_warp(long long num_buckets, const long long* start,
                                            long long* slot) {
    GPUCOPS_FOR_EACH_WARP(b, num_buckets) {
        gpucops_lanes_sort(slot + start[b], nullptr, start[b + 1] - start[b]);
    }
}

extern "C" __global__ void bucket_sort_runs_warp(long long num_buckets, const long long* start,
                                                 long long* slot, double* slot_payload,
                                                 long long* unique) {
    GPUCOPS_FOR_EACH_WARP(b, num_buckets) {
        const long long first = start[b], last = start[b + 1];
        gpucops_lanes_sort(slot + first, slot_payload + first, last - first);
        GPUCOPS_LANES(lane) {
            long long runs = 0;
            for (long long s = first + lane; s < last; s += 32)
                runs += s == first || gpucops_slot_key(slot[s]) != gpucops_slot_key(slot[s - 1]);
            if (runs) gpucops_atomic_add(unique + b, runs);
        }
    }
}

// Σ rows[i, k] over the items i of slots first .. last − 1, in slot order, into a register (rows
// [*, width]); with `checked`, only the items whose checked root is `owner`. Sums class by class
// keep the order of addition per class of an item-by-item sum, with one store per output value
// instead of a load and a store per item.
__device__ __forceinline__ double gpucops_slot_sum(const long long* __restrict__ slot,
                                                   long long first, long long last,
                                                   const double* __restrict__ rows,
                                                   long long width, long long k,
                                                   const long long* checked, long long owner) {
    double sum = 0.0;
    if (!checked) {  // the test out of the loop: the plain sums are the hot ones
        for (long long s = first; s < last; ++s)
            sum += rows[gpucops_slot_item(slot[s]) * width + k];
        return sum;
    }
    for (long long s = first; s < last; ++s) {
        const long long item = gpucops_slot_item(slot[s]);
        if (checked[item] == owner) sum += rows[item * width + k];
    }
    return sum;
}

// out[b, :] = Σ rows[i, :] over the bucket's items in their order (rows [*, width]).
extern "C" __global__ void bucket_sum_rows(long long num_buckets, long long width,
                                           const long long* __restrict__ start,
                                           const long long* __restrict__ slot,
                                           const double* __restrict__ rows,
                                           double* __restrict__ out) {
    GPUCOPS_FOR_EACH(b, num_buckets) {
        for (long long k = 0; k < width; ++k)
            out[b * width + k] = gpucops_slot_sum(slot, start[b], start[b + 1], rows, width, k,
                                                  nullptr, 0);
    }
}

// The contraction's class-cost rows from the star check's buckets (start, slot: the clusters by
// proposed root, in index order): a new cluster — a cluster c the check left a root, row
// mapping[c] — sums the members of its proposed star the check kept (checked[m] = c) in index
// order, as a bucket by new index would; a member the check sent off is alone. Of out's num_rows
// rows (at most num_clusters), those from roots[0] on (a capacity-sized output) are zeroed.
extern "C" __global__ void star_sum_rows(long long num_clusters, long long num_rows,
                                         long long width, const long long* start,
                                         const long long* slot, const long long* proposed,
                                         const long long* checked, const long long* mapping,
                                         const long long* roots, const double* rows,
                                         double* out) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        if (c >= roots[0] && c < num_rows)
            for (long long k = 0; k < width; ++k) out[c * width + k] = 0.0;
        if (checked[c] != c) continue;
        double* row = out + mapping[c] * width;
        const bool alone = proposed[c] != c;  // sent off by the check
        for (long long k = 0; k < width; ++k)
            row[k] = alone ? 0.0 + rows[c * width + k]  // as a sum of one item (−0.0 → 0.0)
                           : gpucops_slot_sum(slot, start[c], start[c + 1], rows, width, k,
                                              checked, c);
    }
}

// Map both end-points of every edge; low[e] = −1 for an edge inside one cluster.
extern "C" __global__ void edge_remap(long long num_edges, const long long* edges,
                                      const long long* mapping, long long* low, long long* high) {
    GPUCOPS_FOR_EACH(e, num_edges) {
        const long long a = mapping[edges[2 * e]], b = mapping[edges[2 * e + 1]];
        low[e] = a == b ? -1 : (a < b ? a : b);
        high[e] = a < b ? b : a;
    }
}

// Write the runs of bucket b (b < num_buckets) from end[b] − unique[b] on (end: the inclusive prefix
// sum of unique): edge (b, high) with the weights of its run summed in edge order (slot_weights:
// the edges' weights, aligned with slot). A capacity-sized output (pad_to = its rows, else 0) has
// its rows from end[num_buckets − 1] to pad_to made inert: edge (0, 0) of weight −inf, a self-loop
// that scores −inf and bids for no pick — the contraction sizes its output by capacity and leaves
// the count on the device, so the host need not wait to learn it. Launched over the larger of
// num_buckets and pad_to.
extern "C" __global__ void edge_write(long long count, long long num_buckets, long long pad_to,
                                      const long long* start, const long long* slot,
                                      const double* slot_weights, const long long* end,
                                      const long long* unique, long long* edges,
                                      double* merged_weights) {
    GPUCOPS_FOR_EACH(i, count) {
        if (i < num_buckets) {
            // each run's sum in a register, stored once at the run's end
            long long out = end[i] - unique[i];
            for (long long s = start[i]; s < start[i + 1];) {
                const long long high = gpucops_slot_key(slot[s]);
                double sum = slot_weights[s];
                for (++s; s < start[i + 1] && gpucops_slot_key(slot[s]) == high; ++s)
                    sum += slot_weights[s];
                edges[2 * out] = i;
                edges[2 * out + 1] = high;
                merged_weights[out++] = sum;
            }
        }
        if (i < pad_to && i >= end[num_buckets - 1]) {
            edges[2 * i] = 0;
            edges[2 * i + 1] = 0;
            merged_weights[i] = gpucops_negative_infinity();
        }
    }
}

// ---- The objective. ----

// cut[e] = 1 where the end-points of edge e carry different labels, else 0.
extern "C" __global__ void edge_cut(long long num_edges, const long long* edges,
                                    const long long* labels, signed char* cut) {
    GPUCOPS_FOR_EACH(e, num_edges) { cut[e] = labels[edges[2 * e]] != labels[edges[2 * e + 1]]; }
}

// ---- The exact star check (clusters bucketed by root, internal edges by their star's root). ----

// Merge cost of the star rooted at b: min_k Σ C(k) − Σ min C − Σ internal w, each sum over the
// bucket's clusters in index order (slot: the clusters by root). The internal edges are found
// in each member's run of edges as the low end-point (the edges are sorted by (low, high); the run
// found by binary search), those whose high end shares the root: in edge order, as a bucket of
// them sorted by edge would add them. A root alone costs 0. Class by class, so no [clusters, K]
// scratch.
__device__ __forceinline__ long long gpucops_first_edge(const long long* edges, long long num_edges,
                                                        long long low) {
    long long first = 0, last = num_edges;  // the first edge whose low end-point is ≥ low
    while (first < last) {
        const long long middle = first + (last - first) / 2;
        if (edges[2 * middle] < low)
            first = middle + 1;
        else
            last = middle;
    }
    return first;
}

extern "C" __global__ void star_cost(long long num_buckets, long long width, long long num_edges,
                                     const long long* start, const long long* slot,
                                     const double* costs, const double* minimum,
                                     const long long* root, const long long* edges,
                                     const double* weights, double* merge_cost) {
    GPUCOPS_FOR_EACH(b, num_buckets) {
        if (start[b + 1] - start[b] < 2) {  // a root alone (or no cluster): nothing to merge
            merge_cost[b] = 0.0;
            continue;
        }
        double best = 0.0, minima = 0.0, internal = 0.0;
        for (long long k = 0; k < width; ++k) {
            const double sum =
                gpucops_slot_sum(slot, start[b], start[b + 1], costs, width, k, nullptr, 0);
            best = k == 0 || sum < best ? sum : best;
        }
        for (long long s = start[b]; s < start[b + 1]; ++s) {
            const long long member = gpucops_slot_item(slot[s]);
            minima += minimum[member];
            for (long long e = gpucops_first_edge(edges, num_edges, member);
                 e < num_edges && edges[2 * e] == member; ++e)
                if (root[edges[2 * e + 1]] == b) internal += weights[e];
        }
        merge_cost[b] = best - minima - internal;
    }
}

// The check's shrink. A member c of a star (root[c] != c) is rejected when its star's merge cost
// is not negative; its key is its pick's (gpucops_bid's key of picks[c], whose t > 0: every member
// joined through its pick). First pass: best[r] = the largest key of r's rejected members (best
// zeroed before the launch).
extern "C" __global__ void star_shrink_bid(long long num_clusters, const long long* root,
                                           const long long* picks, const double* scores,
                                           const double* merge_cost, unsigned long long* best) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const long long r = root[c], e = picks[c];
        if (r != c && !(merge_cost[r] < 0))
            gpucops_atomic_max(best + r, gpucops_pick_key(e, scores[e]));
    }
}

// Second pass: a rejected member stays alone unless its key is its star's best (the best leaf
// keeps the star as a pair); everyone else keeps root[c].
extern "C" __global__ void star_shrink(long long num_clusters, const long long* root,
                                       const long long* picks, const double* scores,
                                       const double* merge_cost, const unsigned long long* best,
                                       long long* checked) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const long long r = root[c];
        const bool rejected = r != c && !(merge_cost[r] < 0);
        checked[c] = rejected && best[r] != gpucops_pick_key(picks[c], scores[picks[c]]) ? c : r;
    }
}

// ---- The tile pre-pass: the exact sequential greedy inside tiles of nodes. ----
// One tile of nodes per thread (a square tile of a pixel grid, or a part of any partition of a
// graph's nodes): over the edges joining two nodes of the tile, contract the edge of largest t
// (then lowest id) while t > 0, summing class costs and parallel edges and re-scoring the merged
// cluster's edges (all but those whose t provably stays w) — the sequential reference's order and
// arithmetic (gpucops/solver/csrc/sequential_amwc.cpp), so a tile ends as the reference would
// leave it given only those edges. Local edge j of a tile is the tile's j-th edge in edge-list
// order; an edge summing several keeps the lowest index, the reference's tie rule. The edge of
// largest t is found in a tournament tree over the tile's edge slots (tree[m + j] = j or −1,
// tree[i] = the better of tree[2i] and tree[2i + 1], the best at tree[1]); each cluster lists its
// edges by slot 2j + side (side 0: end-point u[j], 1: v[j]) through next[], and dead edges
// (u[j] = −1) are unlinked when a list is next walked.

// The better of edges a and b (−1: none): larger t, then lower index.
__device__ __forceinline__ int gpucops_better(int a, int b, const double* t) {
    if (a < 0) return b;
    if (b < 0) return a;
    if (t[a] != t[b]) return t[a] > t[b] ? a : b;
    return a < b ? a : b;
}

// Set edge j's leaf (j if it may be contracted, −1 if not) and update its path to the root.
__device__ __forceinline__ void gpucops_tree_set(int* tree, int m, int j, bool live,
                                                 const double* t) {
    int i = m + j;
    tree[i] = live && t[j] > 0 ? j : -1;
    for (i >>= 1; i >= 1; i >>= 1) tree[i] = gpucops_better(tree[2 * i], tree[2 * i + 1], t);
}

// The other end-point of the edge in slot s.
__device__ __forceinline__ int gpucops_slot_other(int s, const int* u, const int* v) {
    return (s & 1) ? u[s >> 1] : v[s >> 1];
}

// Where a tile lies (tile_greedy's layout, below): its image, its first edge in the tile lists,
// its n nodes (their ids from `nodes`, offset by node_base) and m edges, and the offsets no, eo
// of its scratch.
struct GpucopsTile {
    long long image, first_edge, no, eo, node_base;
    const long long* nodes;
    int n, m;
};

__device__ __forceinline__ GpucopsTile gpucops_tile(long long tile, long long tiles_per_image,
                                                    long long nodes_per_image,
                                                    const long long* node_start,
                                                    const long long* tile_nodes,
                                                    const long long* edge_start) {
    GpucopsTile at;
    const long long b = tile % tiles_per_image, first_node = node_start[b];
    at.image = tile / tiles_per_image;
    at.first_edge = edge_start[b];
    at.n = (int)(node_start[b + 1] - first_node);
    at.m = (int)(edge_start[b + 1] - at.first_edge);
    at.no = at.image * node_start[tiles_per_image] + first_node;
    at.eo = at.image * edge_start[tiles_per_image] + at.first_edge;
    at.node_base = at.image * nodes_per_image;
    at.nodes = tile_nodes + first_node;
    return at;
}

// Node i of a tile starts as a cluster of its own: its class costs copied, their minimum and
// cheapest class.
__device__ __forceinline__ void gpucops_tile_node(const GpucopsTile& at, int i,
                                                  const double* costs, long long K, double* cost,
                                                  double* minimum, int* cls) {
    const double* row = costs + (at.node_base + at.nodes[i]) * K;
    for (long long k = 0; k < K; ++k) cost[i * K + k] = row[k];
    long long best;
    gpucops_row_min(row, K, minimum + i, &best);
    cls[i] = (int)best;
}

// Edge j of a tile: its end-points' positions u[j], v[j], its weight and its score.
__device__ __forceinline__ void gpucops_tile_edge(const GpucopsTile& at, int j,
                                                  const int* edge_ends,
                                                  const long long* tile_edges,
                                                  const double* weights,
                                                  long long edges_per_image, const double* cost,
                                                  const double* minimum, const int* cls,
                                                  long long K, int* u, int* v, double* w,
                                                  double* t) {
    const int a = edge_ends[2 * (at.first_edge + j)], c = edge_ends[2 * (at.first_edge + j) + 1];
    u[j] = a;
    v[j] = c;
    w[j] = weights[at.image * edges_per_image + tile_edges[at.first_edge + j]];
    t[j] = gpucops_score(w[j], cost + a * K, minimum[a], cls[a], cost + c * K, minimum[c], cls[c],
                         K);
}

// Tiles of image i = tile / tiles_per_image: its nodes are i·nodes_per_image + tile_nodes[
// node_start[b] .. node_start[b + 1]) with b = tile % tiles_per_image, its edges i·edges_per_image
// + tile_edges[edge_start[b] ..), whose end-points are edge_ends[2j], edge_ends[2j + 1]: positions
// in the tile's node list. Scratch, per tile at its offset (no = i·node_start[tiles_per_image]
// + node_start[b], eo likewise): cluster_costs [no·K, n·K), cluster_min [no, n), node_work 5n ints
// from 5·no, edge_work 2m doubles from 2·eo, edge_ints 6m ints from 6·eo. Writes root[v] = the
// lowest node id of v's cluster for every node v of a tile.
extern "C" __global__ void tile_greedy(long long num_tiles, long long tiles_per_image,
                                       long long nodes_per_image, long long edges_per_image,
                                       long long num_classes, const long long* node_start,
                                       const long long* tile_nodes, const long long* edge_start,
                                       const long long* tile_edges, const int* edge_ends,
                                       const double* costs, const double* weights,
                                       double* cluster_costs, double* cluster_min,
                                       int* node_work, double* edge_work, int* edge_ints,
                                       long long* root) {
    GPUCOPS_FOR_EACH_HEAVY(tile, num_tiles) {
        const GpucopsTile at =
            gpucops_tile(tile, tiles_per_image, nodes_per_image, node_start, tile_nodes, edge_start);
        const long long K = num_classes, no = at.no, eo = at.eo;
        const int n = at.n, m = at.m;
        double* cost = cluster_costs + no * K;
        double* minimum = cluster_min + no;
        int* parent = node_work + 5 * no;
        int* head = parent + n;
        int* degree = head + n;
        int* mark = degree + n;
        int* cls = mark + n;
        double* w = edge_work + 2 * eo;
        double* t = w + m;
        int* u = edge_ints + 6 * eo;
        int* v = u + m;
        int* next = v + m;
        int* tree = next + 2 * m;

        for (int i = 0; i < n; ++i) {
            gpucops_tile_node(at, i, costs, K, cost, minimum, cls);
            parent[i] = i;
            head[i] = -1;
            degree[i] = 0;
            mark[i] = -1;
        }
        for (int j = 0; j < m; ++j) {
            gpucops_tile_edge(at, j, edge_ends, tile_edges, weights, edges_per_image, cost, minimum,
                              cls, K, u, v, w, t);
            const int a = u[j], c = v[j];
            next[2 * j] = head[a];
            head[a] = 2 * j;
            next[2 * j + 1] = head[c];
            head[c] = 2 * j + 1;
            ++degree[a];
            ++degree[c];
            tree[m + j] = t[j] > 0 ? j : -1;
        }
        for (int i = m - 1; i >= 1; --i) tree[i] = gpucops_better(tree[2 * i], tree[2 * i + 1], t);
        GPUCOPS_CHAIN(tile, 4, m);  // the tile's edges (the tree's leaves)

        while (m > 0 && tree[1] >= 0) {
            GPUCOPS_CHAIN(tile, 0, 1);  // a merge
            const int e = tree[1];
            // absorb the end-point with fewer edges (fewer slots to move)
            const int keep = degree[u[e]] >= degree[v[e]] ? u[e] : v[e];
            const int gone = keep == u[e] ? v[e] : u[e];
            u[e] = -1;
            GPUCOPS_CHAIN(tile, 1, 1);  // a walk up the tree
            gpucops_tree_set(tree, m, e, false, t);
            // mark gone's neighbours with its edge to them
            for (int* s = head + gone; *s >= 0;) {
                GPUCOPS_CHAIN(tile, 2, 1);  // a list step
                const int j = *s >> 1;
                if (u[j] >= 0 && gpucops_slot_other(*s, u, v) == keep) {
                    u[j] = -1;  // a second keep–gone edge (duplicate input pairs): now internal
                    GPUCOPS_CHAIN(tile, 1, 1);
                    gpucops_tree_set(tree, m, j, false, t);
                }
                if (u[j] < 0) {
                    *s = next[*s];
                    continue;
                }
                mark[gpucops_slot_other(*s, u, v)] = j;
                s = next + *s;
            }
            parent[gone] = keep;
            for (long long k = 0; k < K; ++k) cost[keep * K + k] += cost[gone * K + k];
            long long cheapest;
            gpucops_row_min(cost + keep * K, K, minimum + keep, &cheapest);
            const bool same_class = cls[keep] == (int)cheapest;
            cls[keep] = (int)cheapest;
            // keep's edges, in one walk: a neighbour of both sums the two edges into the lower
            // index; re-score all but those that provably keep t = w (both clusters of keep's
            // unchanged class, t = w already, not summed) — in a region of one class, absorbing
            // a node re-scores only its own edges, not the big cluster's
            int count = 0;
            for (int* s = head + keep; *s >= 0;) {
                GPUCOPS_CHAIN(tile, 2, 1);
                const int j = *s >> 1;
                const int other = u[j] < 0 ? -1 : gpucops_slot_other(*s, u, v);
                const int twin = other < 0 ? -1 : mark[other];
                if (twin >= 0) {
                    mark[other] = -1;
                    --degree[other];
                    const double sum = w[j] + w[twin];
                    const int dead = twin < j ? j : twin;
                    w[dead == j ? twin : j] = sum;  // gone's twin, if it survives, moves below
                    u[dead] = -1;
                    GPUCOPS_CHAIN(tile, 1, 1);
                    gpucops_tree_set(tree, m, dead, false, t);
                }
                if (u[j] < 0) {
                    *s = next[*s];
                    continue;
                }
                ++count;
                if (!same_class || cls[other] != cls[keep] || t[j] != w[j]) {
                    GPUCOPS_CHAIN(tile, 3, 1);  // a score (K classes)
                    t[j] = gpucops_score(w[j], cost + keep * K, minimum[keep], cls[keep],
                                         cost + other * K, minimum[other], cls[other], K);
                    GPUCOPS_CHAIN(tile, 1, 1);
                    gpucops_tree_set(tree, m, j, true, t);
                }
                s = next + *s;
            }
            // move gone's remaining edges to keep, re-scored
            for (int s = head[gone]; s >= 0;) {
                GPUCOPS_CHAIN(tile, 2, 1);
                const int after = next[s], j = s >> 1;
                if (u[j] >= 0) {
                    const int other = gpucops_slot_other(s, u, v);
                    mark[other] = -1;
                    if (s & 1)
                        v[j] = keep;
                    else
                        u[j] = keep;
                    next[s] = head[keep];
                    head[keep] = s;
                    ++count;
                    GPUCOPS_CHAIN(tile, 3, 1);
                    t[j] = gpucops_score(w[j], cost + keep * K, minimum[keep], cls[keep],
                                         cost + other * K, minimum[other], cls[other], K);
                    GPUCOPS_CHAIN(tile, 1, 1);
                    gpucops_tree_set(tree, m, j, true, t);
                }
                s = after;
            }
            head[gone] = -1;
            degree[keep] = count;
        }

        // root = the lowest node id of the cluster: its first node in the tile's increasing
        // list (mark[r]: that position for cluster r)
        for (int i = 0; i < n; ++i) {
            int r = i;
            while (parent[r] != r) r = parent[r];
            if (mark[r] < 0) mark[r] = i;
            parent[i] = r;
        }
        for (int i = 0; i < n; ++i)
            root[at.node_base + at.nodes[i]] = at.node_base + at.nodes[mark[parent[i]]];
    }
}

// The same greedy with a warp per tile (the GPU's pre-pass; tile_greedy above stays the host's
// and the tail's, where a thread's tournament tree and edge lists do less work in all). One
// thread's dependent chain — a walk up the tree and along an edge list per score it changes —
// becomes phases of the 32 lanes (shim.cuh): lane l owns the edges at positions p ≡ l (mod 32),
// and each merge is a scan of the lanes' edges that marks keep's and gone's neighbours, a scan
// that sums, moves and re-scores their edges, and two five-phase reductions: the merged cost
// row's cheapest class, the next edge (tile_greedy's order: largest t > 0, then lowest index).
// Once a quarter of the edges are dead the live ones move to the front of spare arrays, in order,
// so the scans shrink with the tile's edges and a position's order is still the edge index's
// (ties break as before). The decisions and the arithmetic are tile_greedy's — a merged row is the
// two rows' sum, a summed edge the two weights' (keep's and gone's roles swap neither: addition
// commutes) —, so it ends in the same clusters; the lower position of the two clusters keeps
// the merge, so the lowest position is the cluster's root. The tile's edges must be distinct
// pairs (the solver's always are: coalesced), since a neighbour's mark is the one edge to it.

// The better of classes a and b of row (−1: none): lower cost, then lower class (gpucops_row_min's
// first minimum).
__device__ __forceinline__ int gpucops_better_class(int a, int b, const double* row) {
    if (a < 0) return b;
    if (b < 0) return a;
    if (row[a] != row[b]) return row[a] < row[b] ? a : b;
    return a < b ? a : b;
}

// Slot 0 of the lanes' 32 slots = the best of them (edges by gpucops_better on t), and count[0] =
// the sum of the lanes' counts: a tree of five phases.
__device__ __forceinline__ void gpucops_lanes_best_edge(int* slot, int* count, const double* t) {
    for (int half = 16; half >= 1; half >>= 1) {
        GPUCOPS_LANES(lane) {
            if (lane < half) {
                GPUCOPS_LANE_STEP(lane);
                slot[lane] = gpucops_better(slot[lane], slot[lane + half], t);
                count[lane] += count[lane + half];
            }
        }
    }
}

// Slot 0 = the best of the lanes' classes of row: a tree of five phases.
__device__ __forceinline__ void gpucops_lanes_best_class(int* slot, const double* row) {
    for (int half = 16; half >= 1; half >>= 1) {
        GPUCOPS_LANES(lane) {
            if (lane < half) {
                GPUCOPS_LANE_STEP(lane);
                slot[lane] = gpucops_better_class(slot[lane], slot[lane + half], row);
            }
        }
    }
}

// Arguments as tile_greedy's, with node_work 6n ints from 6·no, edge_work 4m doubles from 4·eo,
// edge_ints 4m from 4·eo (each: the edges' arrays and their spares) and lane_work 96 ints a tile
// (the lanes' best edges, best classes and live edges); launched with a warp per tile.
extern "C" __global__ void tile_greedy_warp(long long num_tiles, long long tiles_per_image,
                                            long long nodes_per_image, long long edges_per_image,
                                            long long num_classes, const long long* node_start,
                                            const long long* tile_nodes,
                                            const long long* edge_start,
                                            const long long* tile_edges, const int* edge_ends,
                                            const double* costs, const double* weights,
                                            double* cluster_costs, double* cluster_min,
                                            int* node_work, double* edge_work, int* edge_ints,
                                            int* lane_work, long long* root) {
    GPUCOPS_FOR_EACH_WARP(tile, num_tiles) {
        GPUCOPS_CHAIN_TILE(tile);
        const GpucopsTile at =
            gpucops_tile(tile, tiles_per_image, nodes_per_image, node_start, tile_nodes, edge_start);
        const long long K = num_classes, no = at.no, eo = at.eo;
        const int n = at.n, m = at.m;
        double* cost = cluster_costs + no * K;
        double* minimum = cluster_min + no;
        int* parent = node_work + 6 * no;
        int* cls = parent + n;
        // keep's and gone's edge to each neighbour, valid where stamped with the merge's number
        int* keep_edge = cls + n;
        int* keep_stamp = keep_edge + n;
        int* gone_edge = keep_stamp + n;
        int* gone_stamp = gone_edge + n;
        // the edges at positions [0, size): end-points u, v (u = −1: dead, inside a cluster or
        // summed into another), weight w, score t
        double* w = edge_work + 4 * eo;
        double* t = w + m;
        double* w_spare = t + m;
        double* t_spare = w_spare + m;
        int* u = edge_ints + 4 * eo;
        int* v = u + m;
        int* u_spare = v + m;
        int* v_spare = u_spare + m;
        int* best_edge = lane_work + 96 * tile;
        int* best_class = best_edge + 32;
        int* live = best_class + 32;
        int size = m;

        GPUCOPS_LANES(lane) {
            for (int i = lane; i < n; i += 32) {
                GPUCOPS_LANE_STEP(lane);
                gpucops_tile_node(at, i, costs, K, cost, minimum, cls);
                parent[i] = i;
                keep_stamp[i] = -1;
                gone_stamp[i] = -1;
            }
        }
        GPUCOPS_LANES(lane) {
            int mine = -1, alive = 0;
            for (int j = lane; j < m; j += 32, ++alive) {
                GPUCOPS_LANE_STEP(lane);
                gpucops_tile_edge(at, j, edge_ends, tile_edges, weights, edges_per_image, cost,
                                  minimum, cls, K, u, v, w, t);
                if (t[j] > 0) mine = gpucops_better(mine, j, t);
            }
            best_edge[lane] = mine;
            live[lane] = alive;
        }
        GPUCOPS_CHAIN(tile, 4, m);  // the tile's edges
        gpucops_lanes_best_edge(best_edge, live, t);

        for (int merge = 0; best_edge[0] >= 0; ++merge) {
            GPUCOPS_CHAIN(tile, 0, 1);  // a merge
            const int e = best_edge[0];
            const int keep = u[e] < v[e] ? u[e] : v[e], gone = u[e] < v[e] ? v[e] : u[e];
            double* keep_row = cost + keep * K;
            // mark keep's and gone's neighbours with their edges; the merged row and each lane's
            // cheapest class of it
            GPUCOPS_LANES(lane) {
                for (int j = lane; j < size; j += 32) {
                    GPUCOPS_LANE_STEP(lane);
                    const int a = u[j], c = v[j];
                    if (a < 0 || j == e) continue;
                    if (a == keep || c == keep) {
                        keep_edge[a == keep ? c : a] = j;
                        keep_stamp[a == keep ? c : a] = merge;
                    } else if (a == gone || c == gone) {
                        gone_edge[a == gone ? c : a] = j;
                        gone_stamp[a == gone ? c : a] = merge;
                    }
                }
                int cheapest = -1;
                for (long long k = lane; k < K; k += 32) {
                    GPUCOPS_LANE_STEP(lane);
                    keep_row[k] += cost[gone * K + k];
                    cheapest = gpucops_better_class(cheapest, (int)k, keep_row);
                }
                best_class[lane] = cheapest;
            }
            gpucops_lanes_best_class(best_class, keep_row);
            const int keep_class = best_class[0];
            const double keep_min = keep_row[keep_class];
            // keep's and gone's edges: a neighbour of both sums its two edges into the lower
            // index (the other dies, each lane deciding for its own edge), gone's edges move to
            // keep, and each is re-scored unless it provably keeps its t: t = w already and both
            // ends now of one class, whose score is w (gpucops_score) — tile_greedy re-scores
            // more, to the same values; then each lane's best edge and live edges
            GPUCOPS_LANES(lane) {
                if (lane == 0) {
                    minimum[keep] = keep_min;
                    cls[keep] = keep_class;
                    parent[gone] = keep;
                }
                int mine = -1, alive = 0;
                for (int j = lane; j < size; j += 32) {
                    GPUCOPS_LANE_STEP(lane);
                    const int a = u[j], c = v[j];
                    if (a < 0) continue;
                    if (j == e) {
                        u[j] = -1;  // inside the merged cluster now
                        continue;
                    }
                    const bool at_keep = a == keep || c == keep, at_gone = a == gone || c == gone;
                    if (at_keep || at_gone) {
                        const int x = a == keep || a == gone ? c : a;
                        int twin = -1;
                        if (at_keep && gone_stamp[x] == merge) twin = gone_edge[x];
                        if (at_gone && keep_stamp[x] == merge) twin = keep_edge[x];
                        if (twin >= 0 && twin < j) {
                            u[j] = -1;  // summed into the twin, by the twin's lane
                            continue;
                        }
                        if (twin >= 0) w[j] = w[j] + w[twin];
                        if (at_gone) {
                            if (a == gone)
                                u[j] = keep;
                            else
                                v[j] = keep;
                        }
                        if (cls[x] != keep_class || t[j] != w[j]) {
                            GPUCOPS_LANE_STEP(lane);  // a score (K classes)
                            GPUCOPS_CHAIN(tile, 3, 1);
                            t[j] = gpucops_score(w[j], keep_row, keep_min, keep_class,
                                                 cost + x * K, minimum[x], cls[x], K);
                        }
                    }
                    ++alive;
                    if (t[j] > 0) mine = gpucops_better(mine, j, t);
                }
                best_edge[lane] = mine;
                live[lane] = alive;
            }
            gpucops_lanes_best_edge(best_edge, live, t);

            const int alive = live[0], next = best_edge[0];
            if (next < 0 || 4 * alive > 3 * size) continue;
            // a quarter of the positions are dead: the live edges to the front of the spares, in
            // order (lane l moves block l), and the best edge to its new position
            const int block = (size + 31) / 32;
            int* in_block = best_class;  // free until the next merge's cheapest class
            GPUCOPS_LANES(lane) {
                int count = 0;
                for (int j = lane * block; j < size && j < (lane + 1) * block; ++j) {
                    GPUCOPS_LANE_STEP(lane);
                    count += u[j] >= 0;
                }
                in_block[lane] = count;
            }
            GPUCOPS_LANES(lane) {
                int to = 0;
                for (int l = 0; l < lane; ++l) {
                    GPUCOPS_LANE_STEP(lane);
                    to += in_block[l];
                }
                for (int j = lane * block; j < size && j < (lane + 1) * block; ++j) {
                    GPUCOPS_LANE_STEP(lane);
                    if (u[j] < 0) continue;
                    if (j == next) best_edge[0] = to;
                    u_spare[to] = u[j];
                    v_spare[to] = v[j];
                    w_spare[to] = w[j];
                    t_spare[to++] = t[j];
                }
            }
            gpucops_swap(u, u_spare);
            gpucops_swap(v, v_spare);
            gpucops_swap(w, w_spare);
            gpucops_swap(t, t_spare);
            size = alive;
        }

        // every parent is a lower position of its cluster: ⌈log2 n⌉ halvings of the paths leave
        // each node at its cluster's lowest position, the root (from one array into the other:
        // no lane reads what another writes; keep_edge is free by now)
        int* jumped = keep_edge;
        for (int span = 1; span < n; span <<= 1) {
            GPUCOPS_LANES(lane) {
                for (int i = lane; i < n; i += 32) {
                    GPUCOPS_LANE_STEP(lane);
                    jumped[i] = parent[parent[i]];
                }
            }
            gpucops_swap(jumped, parent);
        }
        GPUCOPS_LANES(lane) {
            for (int i = lane; i < n; i += 32) {
                GPUCOPS_LANE_STEP(lane);
                root[at.node_base + at.nodes[i]] = at.node_base + at.nodes[parent[i]];
            }
        }
    }
}
