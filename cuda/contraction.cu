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
        if (t > 0) {
            const unsigned long long key =
                ((unsigned long long)gpucops_float_bits((float)t) << 32) |
                (0xFFFFFFFFULL - (unsigned long long)e);
            gpucops_atomic_max(best + u, key);
            gpucops_atomic_max(best + v, key);
        }
    }
}

// Stars, first pass. For each cluster c with a pick (picks[c] ≥ 0): target[c] = the other end of
// its picked edge. A leaf joins the centre it picked (root[c] = target[c]) — with a goodness gate
// (gate ≥ 0: only if its t ≥ gate × the centre's best t) — and both are marked involved.
// root must hold the identity and involved zeros before the launch.
extern "C" __global__ void star_propose(long long num_clusters, const long long* picks,
                                        const long long* edges, const double* scores,
                                        const long long* local_index, long long round_index,
                                        double gate, long long* target, long long* root,
                                        int* involved) {
    GPUCOPS_FOR_EACH(c, num_clusters) {
        const long long e = picks[c];
        if (e < 0) {
            target[c] = -1;
            continue;
        }
        const long long other = edges[2 * e] == c ? edges[2 * e + 1] : edges[2 * e];
        target[c] = other;
        const bool joins = !gpucops_coin(local_index[c], round_index) &&
                           gpucops_coin(local_index[other], round_index) &&
                           (gate < 0 || scores[e] >= gate * scores[picks[other]]);
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
