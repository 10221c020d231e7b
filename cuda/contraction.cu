// Kernels of the batched parallel contraction (gpucops/parallel.py holds the orchestration and
// the torch reference of every step; the tests compare them bit for bit).
#include "shim.cuh"

// Hash coin of (cluster index within its image, round): 1 = centre, 0 = leaf. Integer mixing
// below 2^62, identical to gpucops.parallel.coin_is_centre.
__device__ __forceinline__ int gpucops_coin(long long local_index, long long round_index) {
    const long long modulus = 1LL << 31;
    long long x = (local_index * 1103515245LL + (round_index * 2654435LL + 12345LL)) % modulus;
    x = x ^ (x >> 13);
    x = (x * 1664525LL + 1013904223LL) % modulus;
    x = x ^ (x >> 16);
    return (int)((x >> 7) & 1);
}

// Each cluster's cheapest class: minimum[c] = min_k costs[c, k], argmin[c] = the lowest k
// attaining it (+inf costs are forbidden classes; an all-+inf row gives class 0).
extern "C" __global__ void row_min(long long num_rows, long long width, const double* costs,
                                   double* minimum, long long* argmin) {
    GPUCOPS_FOR_EACH(c, num_rows) {
        const double* row = costs + c * width;
        double best = row[0];
        long long at = 0;
        for (long long k = 1; k < width; ++k) {
            if (row[k] < best) {
                best = row[k];
                at = k;
            }
        }
        minimum[c] = best;
        argmin[c] = at;
    }
}

// Edge e = (u, v) with score t > 0 bids for being u's and v's pick: key = (float32 bits of t) << 32
// | (0xFFFFFFFF − e), so the max is the largest t, then the lowest e (positive floats order as
// their bits).
__device__ __forceinline__ void gpucops_bid(long long e, long long u, long long v, double t,
                                            unsigned long long* best) {
    if (t > 0) {
        const unsigned long long key = ((unsigned long long)gpucops_float_bits((float)t) << 32) |
                                       (0xFFFFFFFFULL - (unsigned long long)e);
        gpucops_atomic_max(best + u, key);
        gpucops_atomic_max(best + v, key);
    }
}

// Score every edge, t = w − p (p = 0 where both clusters have the same class, else
// min_k [(C_u(k) − m_u) + (C_v(k) − m_v)]), and let each cluster pick its incident edge of largest
// t > 0: best[c] = max over such edges of (float32 bits of t) << 32 | (0xFFFFFFFF − e); 0 = none.
// best must be zeroed before the launch.
extern "C" __global__ void score_pick(long long num_edges, long long num_classes,
                                      const long long* edges, const double* weights,
                                      const double* costs, const double* minimum,
                                      const long long* argmin, double* scores,
                                      unsigned long long* best) {
    GPUCOPS_FOR_EACH(e, num_edges) {
        const long long u = edges[2 * e], v = edges[2 * e + 1];
        double t = weights[e];
        if (argmin[u] != argmin[v]) {
            const double* cu = costs + u * num_classes;
            const double* cv = costs + v * num_classes;
            const double mu = minimum[u], mv = minimum[v];
            double p = (cu[0] - mu) + (cv[0] - mv);
            for (long long k = 1; k < num_classes; ++k) {
                const double value = (cu[k] - mu) + (cv[k] - mv);
                if (value < p) p = value;
            }
            t = weights[e] - p;
        }
        scores[e] = t;
        gpucops_bid(e, u, v, t, best);
    }
}

// Picks from given scores (after the threshold zeroed some): as the second half of score_pick.
// best must be zeroed before the launch.
extern "C" __global__ void pick(long long num_edges, const long long* edges, const double* scores,
                                unsigned long long* best) {
    GPUCOPS_FOR_EACH(e, num_edges) { gpucops_bid(e, edges[2 * e], edges[2 * e + 1], scores[e], best); }
}

// Goodness gate (gate ≥ 0): a leaf joins only if its t ≥ gate × its centre's best t.
__device__ __forceinline__ bool gpucops_gate(double gate, const double* scores,
                                             const long long* picks, long long e, long long centre) {
    return gate < 0 || scores[e] >= gate * scores[picks[centre]];
}

// Stars, first pass. For each cluster c with a pick (picks[c] ≥ 0): target[c] = the other end of
// its picked edge, which is marked picked. A leaf joins the centre it picked (root[c] =
// target[c]) if the gate lets it, and both are marked involved. root must hold the identity and
// involved and picked zeros before the launch.
extern "C" __global__ void star_propose(long long num_clusters, const long long* picks,
                                        const long long* edges, const double* scores,
                                        const long long* local_index, long long round_index,
                                        double gate, long long* target, long long* root,
                                        int* involved, int* picked) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const long long e = picks[c];
        if (e < 0) {
            target[c] = -1;
            continue;
        }
        const long long other = edges[2 * e] == c ? edges[2 * e + 1] : edges[2 * e];
        target[c] = other;
        gpucops_set_flag(picked + other);
        const bool joins = !gpucops_coin(local_index[c], round_index) &&
                           gpucops_coin(local_index[other], round_index) &&
                           gpucops_gate(gate, scores, picks, e, other);
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
// star yet joins the cluster it picked if that one is a root (a centre, a pair's root or alone),
// gate permitting. Nobody picked c, so nobody joins c; c picked its target, so the target's root
// is not written here: the pass reads nothing it writes. Every member's pick still leads to its
// root, which the star check's shrink to the best leaf relies on.
extern "C" __global__ void star_free(long long num_clusters, const long long* picks,
                                     const long long* target, const int* picked,
                                     const double* scores, double gate, long long* root) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const long long other = target[c];
        if (other >= 0 && !picked[c] && root[c] == c && root[other] == other &&
            gpucops_gate(gate, scores, picks, picks[c], other))
            root[c] = other;
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

// Put item i in its bucket: slot[start[keys[i]] + fill[keys[i]]++] = (secondary[i] << 32) | i,
// and its payload (when given) beside it.
__device__ __forceinline__ void gpucops_fill(long long i, const long long* keys,
                                             const long long* secondary, const double* payload,
                                             const long long* start, long long* fill,
                                             long long* slot, double* slot_payload) {
    const long long key = keys[i];
    if (key < 0) return;
    const long long s = start[key] + gpucops_atomic_add(fill + key, 1LL);
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

// Fill the buckets (fill zeroed before the launch) — items only, or items with a payload each.
extern "C" __global__ void bucket_fill(long long n, const long long* keys,
                                       const long long* secondary, const long long* start,
                                       long long* fill, long long* slot) {
    GPUCOPS_FOR_EACH(i, n) { gpucops_fill(i, keys, secondary, nullptr, start, fill, slot, nullptr); }
}

extern "C" __global__ void bucket_fill_payload(long long n, const long long* keys,
                                               const long long* secondary, const double* payload,
                                               const long long* start, long long* fill,
                                               long long* slot, double* slot_payload) {
    GPUCOPS_FOR_EACH(i, n) {
        gpucops_fill(i, keys, secondary, payload, start, fill, slot, slot_payload);
    }
}

// Sort every bucket — items only, or with their payloads (aligned with slot).
extern "C" __global__ void bucket_sort(long long num_buckets, const long long* start,
                                       long long* slot) {
    GPUCOPS_FOR_EACH(b, num_buckets) {
        gpucops_sort_bucket(slot + start[b], nullptr, start[b + 1] - start[b]);
    }
}

extern "C" __global__ void bucket_sort_payload(long long num_buckets, const long long* start,
                                               long long* slot, double* slot_payload) {
    GPUCOPS_FOR_EACH(b, num_buckets) {
        gpucops_sort_bucket(slot + start[b], slot_payload + start[b], start[b + 1] - start[b]);
    }
}

// out[b, :] = Σ rows[i, :] over the bucket's items in their order (rows [*, width]).
extern "C" __global__ void bucket_sum_rows(long long num_buckets, long long width,
                                           const long long* start, const long long* slot,
                                           const double* rows, double* out) {
    GPUCOPS_FOR_EACH(b, num_buckets) {
        double* sum = out + b * width;
        for (long long k = 0; k < width; ++k) sum[k] = 0.0;
        for (long long s = start[b]; s < start[b + 1]; ++s) {
            const double* row = rows + gpucops_slot_item(slot[s]) * width;
            for (long long k = 0; k < width; ++k) sum[k] += row[k];
        }
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

// In each bucket of edges by low end-point, sorted by (high, e): unique[b] = the number of runs
// of equal high (the distinct edges the bucket's cluster will have).
extern "C" __global__ void edge_runs(long long num_buckets, const long long* start,
                                     const long long* slot, long long* unique) {
    GPUCOPS_FOR_EACH(b, num_buckets) {
        long long runs = 0;
        for (long long s = start[b]; s < start[b + 1]; ++s)
            runs += s == start[b] || gpucops_slot_key(slot[s]) != gpucops_slot_key(slot[s - 1]);
        unique[b] = runs;
    }
}

// Write the runs of bucket b from offset[b] on: edge (b, high) with the weights of its run
// summed in edge order (slot_weights: the edges' weights, aligned with slot).
extern "C" __global__ void edge_write(long long num_buckets, const long long* start,
                                      const long long* slot, const double* slot_weights,
                                      const long long* offset, long long* edges,
                                      double* merged_weights) {
    GPUCOPS_FOR_EACH(b, num_buckets) {
        long long out = offset[b] - 1;
        for (long long s = start[b]; s < start[b + 1]; ++s) {
            const long long high = gpucops_slot_key(slot[s]);
            if (s == start[b] || high != gpucops_slot_key(slot[s - 1])) {
                ++out;
                edges[2 * out] = b;
                edges[2 * out + 1] = high;
                merged_weights[out] = slot_weights[s];
            } else {
                merged_weights[out] += slot_weights[s];
            }
        }
    }
}

// ---- The objective. ----

// cut[e] = 1 where the end-points of edge e carry different labels, else 0.
extern "C" __global__ void edge_cut(long long num_edges, const long long* edges,
                                    const long long* labels, signed char* cut) {
    GPUCOPS_FOR_EACH(e, num_edges) { cut[e] = labels[edges[2 * e]] != labels[edges[2 * e + 1]]; }
}

// ---- The exact star check. ----

// key[c] = root[c] for every cluster of a star of two or more (a member or a root with
// members), else −1. in_star must be zeroed before the launch of star_mark.
extern "C" __global__ void star_mark(long long num_clusters, const long long* root, int* in_star) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        if (root[c] != c) {
            gpucops_set_flag(in_star + c);
            gpucops_set_flag(in_star + root[c]);
        }
    }
}

extern "C" __global__ void star_keys(long long num_clusters, const long long* root,
                                     const int* in_star, long long* key) {
    GPUCOPS_FOR_EACH(c, num_clusters) { key[c] = in_star[c] ? root[c] : -1; }
}

// key[e] = the common root of both end-points, or −1 when the edge joins two stars.
extern "C" __global__ void internal_keys(long long num_edges, const long long* edges,
                                         const long long* root, long long* key) {
    GPUCOPS_FOR_EACH(e, num_edges) {
        const long long r = root[edges[2 * e]];
        key[e] = r == root[edges[2 * e + 1]] ? r : -1;
    }
}

// Merge cost of the star rooted at b: min_k Σ C(k) − Σ min C − Σ internal w, each sum over the
// bucket's items in order (an empty star costs 0). Class by class, so no [clusters, K] scratch.
extern "C" __global__ void star_cost(long long num_buckets, long long width, const long long* start,
                                     const long long* slot, const double* costs,
                                     const double* minimum, const long long* internal_start,
                                     const long long* internal_slot, const double* weights,
                                     double* merge_cost) {
    GPUCOPS_FOR_EACH(b, num_buckets) {
        double best = 0.0, minima = 0.0, internal = 0.0;
        for (long long k = 0; k < width; ++k) {
            double sum = 0.0;
            for (long long s = start[b]; s < start[b + 1]; ++s)
                sum += costs[gpucops_slot_item(slot[s]) * width + k];
            best = k == 0 || sum < best ? sum : best;
        }
        for (long long s = start[b]; s < start[b + 1]; ++s)
            minima += minimum[gpucops_slot_item(slot[s])];
        for (long long s = internal_start[b]; s < internal_start[b + 1]; ++s)
            internal += weights[gpucops_slot_item(internal_slot[s])];
        merge_cost[b] = best - minima - internal;
    }
}
