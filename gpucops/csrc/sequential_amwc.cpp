// Sequential greedy edge contraction for the asymmetric multiway cut (AMWC): the reference solver.
//
// An exact, readable transcription of Algorithm 2 of the COPS supplementary (Abbas & Swoboda,
// NeurIPS 2021), in the spirit of LPMP's asymmetric_multiway_cut_gaec.cpp. It is the quality
// baseline and the test oracle of the parallel solver, so it favours clarity over speed.
//
// Problem: nodes i with class costs C(i, k) (lower = better), edges with costs w (paid when cut;
// positive = attractive). Every node starts as its own cluster with class argmin_k C(i, k). The
// score of the edge between clusters I and J (parallel edges summed) is
//
//     t(IJ) = w(IJ) − p(IJ),   p(IJ) = 0                                  if x(I) = x(J)
//                              p(IJ) = min_k [(C_I(k) − m_I) + (C_J(k) − m_J)]  otherwise,
//
// with C_I the summed class costs of I, m_I = min_k C_I(k) and x(I) = argmin_k C_I(k) (lowest k on
// ties). This is the pseudocode's t = m(ij) − s(ij) written as attraction minus a non-negative
// class-conflict term; the margins are formed before they are added, so p is computed from small
// numbers and stays bit-for-bit constant when only the other cluster's (large) sums change.
//
// The loop contracts the edge of largest t (then lowest edge id) while t > 0 (merging on t = 0 is
// pointless and cost dropout makes exact zeros common), sums parallel edges and re-scores every
// edge of the merged cluster, as the pseudocode does. (LPMP's released code re-scores only the
// absorbed cluster's edges and leaves stale entries for the others; ARCHITECTURE.md notes why we
// follow the pseudocode.) An edge whose score and id are unchanged keeps its queue entry.
//
// The id of an edge between two clusters is the lowest input edge id among the edges it sums, so
// ties are broken the same way however the contraction went. Classes may be restricted per image
// (label_mask): forbidden classes never enter a min or argmin.
//
// The stuff merge (lines 19–23: all clusters of one non-partitionable class in one image become
// one segment) and the numbering of segments are done by the caller, shared with the parallel
// solver.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <queue>
#include <vector>

namespace {

struct Edge {
    int64_t u, v;     // current end-point clusters
    double cost;      // summed input edge costs
    double conflict;  // p of the last scoring
    double t;         // score of the last scoring (NaN: must be re-queued)
    int64_t id;       // lowest input edge id among the summed edges (tie-break)
    uint32_t stamp;   // bumped when the edge's queue entry becomes stale
    bool alive;

    int64_t other(int64_t cluster) const { return u == cluster ? v : u; }
};

struct QueueEntry {
    double t;
    int64_t id;
    int64_t edge;
    uint32_t stamp;
};

// Max-heap order: larger t first, then lower edge id (ids of live edges are unique).
struct QueueOrder {
    bool operator()(const QueueEntry& a, const QueueEntry& b) const {
        if (a.t != b.t) return a.t < b.t;
        return a.id > b.id;
    }
};

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr double kUnscored = std::numeric_limits<double>::quiet_NaN();

class GreedyContraction {
  public:
    GreedyContraction(int64_t num_nodes, int64_t num_classes, const double* node_costs,
                      const uint8_t* label_mask, const int64_t* image_index)
        : n_(num_nodes), k_(num_classes), cost_(node_costs, node_costs + num_nodes * num_classes),
          min_(num_nodes), gap_(num_nodes), best_(num_nodes), parent_(num_nodes),
          incident_(num_nodes), mark_(num_nodes, -1), forbidden_(label_mask), image_(image_index) {
        for (int64_t i = 0; i < n_; ++i) {
            parent_[i] = i;
            update_class(i);
        }
    }

    // Edges are distinct pairs (the caller sums duplicates), each with its input edge id.
    void add_edges(int64_t num_edges, const int64_t* pairs, const double* costs, const int64_t* ids) {
        edges_.reserve(num_edges);
        for (int64_t e = 0; e < num_edges; ++e) {
            const int64_t a = pairs[2 * e], b = pairs[2 * e + 1];
            edges_.push_back(Edge{a, b, costs[e], 0.0, kUnscored, ids[e], 0, true});
            incident_[a].push_back(e);
            incident_[b].push_back(e);
        }
    }

    int64_t run() {
        for (int64_t e = 0; e < static_cast<int64_t>(edges_.size()); ++e) rescore(e);
        int64_t merges = 0;
        while (!queue_.empty()) {
            const QueueEntry top = queue_.top();
            queue_.pop();
            const Edge& edge = edges_[top.edge];
            if (!edge.alive || edge.stamp != top.stamp) continue;  // lazy invalidation
            contract(top.edge);
            ++merges;
        }
        return merges;
    }

    // Root cluster of every node and the class of its cluster.
    void labels(int64_t* clusters, int64_t* classes) {
        for (int64_t i = 0; i < n_; ++i) {
            const int64_t root = find(i);
            clusters[i] = root;
            classes[i] = best_[root];
        }
    }

  private:
    bool allowed(int64_t cluster, int64_t k) const {
        return forbidden_ == nullptr || !forbidden_[image_[cluster] * k_ + k];
    }

    const double* costs_of(int64_t cluster) const { return cost_.data() + cluster * k_; }

    // Class margin C(k) − min C of a cluster.
    double margin(int64_t cluster, int64_t k) const { return costs_of(cluster)[k] - min_[cluster]; }

    // min, argmin (lowest k on ties) and gap to the second smallest class cost, over allowed k.
    void update_class(int64_t cluster) {
        const double* c = costs_of(cluster);
        double first = kInfinity, second = kInfinity;
        int64_t arg = -1;
        for (int64_t k = 0; k < k_; ++k) {
            if (!allowed(cluster, k)) continue;
            if (c[k] < first) {
                second = first, first = c[k], arg = k;
            } else if (c[k] < second) {
                second = c[k];
            }
        }
        min_[cluster] = first;
        gap_[cluster] = second - first;  // every margin but the argmin's is ≥ gap
        best_[cluster] = arg;
    }

    double conflict(const Edge& e) const {
        if (best_[e.u] == best_[e.v]) return 0.0;
        double p = kInfinity;
        for (int64_t k = 0; k < k_; ++k)
            if (allowed(e.u, k)) p = std::min(p, margin(e.u, k) + margin(e.v, k));
        return p;
    }

    void rescore(int64_t e) {
        Edge& edge = edges_[e];
        edge.conflict = conflict(edge);
        const double t = edge.cost - edge.conflict;
        if (t == edge.t) return;  // unchanged score and id: its queue entry (if any) stays valid
        edge.t = t;
        ++edge.stamp;
        if (t > 0) queue_.push(QueueEntry{t, edge.id, e, edge.stamp});
    }

    // Re-score edge e of cluster s (which just grew) to neighbour h, unless its score provably
    // did not change: its cost is unchanged ("touched" is false), s kept its class, and either h
    // has that class too (t = cost) or the stored conflict is h's margin at s's class and no
    // other class of s has a smaller margin (then the min over k is attained, bit for bit, at
    // s's class, where s's margin is exactly 0).
    // Built with -DGPUCOPS_RESCORE_ALL, every edge is re-scored: the plain transcription, which the
    // tests compare against.
    void refresh(int64_t e, int64_t s, int64_t h, bool touched, int64_t previous_class) {
#ifndef GPUCOPS_RESCORE_ALL
        const Edge& edge = edges_[e];
        if (!touched && best_[s] == previous_class) {
            if (best_[h] == best_[s]) return;
            if (edge.conflict <= gap_[s] && edge.conflict == margin(h, best_[s])) return;
        }
#endif
        rescore(e);
    }

    void kill(int64_t e) {
        edges_[e].alive = false;
        ++edges_[e].stamp;
    }

    // Contract edge e: the cluster with fewer incident edges is absorbed into the other; every
    // edge of the merged cluster is re-scored (Algorithm 2) unless provably unchanged.
    void contract(int64_t e) {
        int64_t keep = edges_[e].u, gone = edges_[e].v;
        if (incident_[gone].size() > incident_[keep].size() ||
            (incident_[gone].size() == incident_[keep].size() && gone < keep))
            std::swap(keep, gone);
        kill(e);
        const int64_t previous_class = best_[keep];
        double* target = cost_.data() + keep * k_;
        const double* source = costs_of(gone);
        for (int64_t k = 0; k < k_; ++k) target[k] += source[k];
        update_class(keep);
        parent_[gone] = keep;

        for (const int64_t f : incident_[gone])
            if (edges_[f].alive) mark_[edges_[f].other(gone)] = f;

        // keep's own edges: drop dead entries, sum the parallel edge from gone into each, re-score
        std::vector<int64_t>& mine = incident_[keep];
        size_t write = 0;
        for (size_t r = 0; r < mine.size(); ++r) {
            const int64_t f = mine[r];
            if (!edges_[f].alive) continue;
            mine[write++] = f;
            const int64_t h = edges_[f].other(keep);
            const int64_t parallel = mark_[h];
            if (parallel >= 0) {
                Edge& kept = edges_[f];
                kept.cost += edges_[parallel].cost;
                kept.id = std::min(kept.id, edges_[parallel].id);
                kept.t = kUnscored;  // its id may have changed with an unchanged score
                kill(parallel);
                mark_[h] = -1;
            }
            refresh(f, keep, h, parallel >= 0, previous_class);
        }
        mine.resize(write);

        // gone's remaining edges move to keep (neighbours keep the same edge index in their lists)
        for (const int64_t f : incident_[gone]) {
            if (!edges_[f].alive) continue;
            Edge& edge = edges_[f];
            const int64_t h = edge.other(gone);
            mark_[h] = -1;
            (edge.u == gone ? edge.u : edge.v) = keep;
            mine.push_back(f);
            refresh(f, keep, h, true, previous_class);
        }
        std::vector<int64_t>().swap(incident_[gone]);  // free its memory
    }

    int64_t find(int64_t i) {
        while (parent_[i] != i) i = parent_[i] = parent_[parent_[i]];
        return i;
    }

    int64_t n_, k_;
    std::vector<double> cost_;  // [n, k] summed class costs; row i is valid for root clusters
    std::vector<double> min_, gap_;
    std::vector<int64_t> best_;
    std::vector<int64_t> parent_;
    std::vector<std::vector<int64_t>> incident_;  // edge ids per cluster (dead ones dropped lazily)
    std::vector<int64_t> mark_;  // scratch: gone's edge to each neighbour during a contraction
    std::vector<Edge> edges_;
    std::priority_queue<QueueEntry, std::vector<QueueEntry>, QueueOrder> queue_;
    const uint8_t* forbidden_;  // [num_images, k] or null
    const int64_t* image_;      // [n]; a cluster's image is its root node's
};

}  // namespace

extern "C" {

// Solve one (block-diagonal) AMWC graph up to, but not including, the stuff merge.
//   node_costs  [num_nodes, num_classes] float64
//   label_mask  [num_images, num_classes] uint8 (1 = forbidden) or null
//   image_index [num_nodes] int64
//   edges       [num_edges, 2] int64: distinct pairs, in range, no self-loops, within one image
//   edge_costs  [num_edges] float64
//   edge_ids    [num_edges] int64: distinct ids for tie-breaking (lowest input id of a pair)
// Writes clusters [num_nodes] (root node id of each node's cluster) and classes [num_nodes];
// returns the number of merges.
int64_t gpucops_sequential_amwc(int64_t num_nodes, int64_t num_classes, const double* node_costs,
                                const uint8_t* label_mask, const int64_t* image_index,
                                int64_t num_edges, const int64_t* edges, const double* edge_costs,
                                const int64_t* edge_ids, int64_t* clusters, int64_t* classes) {
    GreedyContraction solver(num_nodes, num_classes, node_costs, label_mask, image_index);
    solver.add_edges(num_edges, edges, edge_costs, edge_ids);
    const int64_t merges = solver.run();
    solver.labels(clusters, classes);
    return merges;
}

}  // extern "C"
