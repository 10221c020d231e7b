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
// follow the pseudocode.)
//
// Re-scoring is skipped only where the score provably did not change. Each edge remembers its p
// and the class k* attaining it. When cluster s grows and keeps its class x_s, an edge of s with
// k* = x_s and p ≤ gap(s) (the distance from s's best to its second-best class cost) keeps p bit
// for bit: the term at x_s is 0 + (h's margin at x_s) = p, and every other term is at least
// s's margin there, which is ≥ gap(s) ≥ p. Each cluster therefore files its edges as "cold" (that
// condition held when filed; kept in a heap by p, so a shrinking gap pops exactly the edges it
// exposes) or "hot" (visited on every growth). An edge with k* = x_s is hot at its other end h
// (unless x_h = x_s, where p = 0 whatever either side does), so a change of h is always seen.
// Built with -DGPUCOPS_RESCORE_ALL every edge of the merged cluster is re-scored: the plain
// transcription, which the tests compare against bit for bit.
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
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

struct Edge {
    int64_t u, v;      // current end-point clusters
    double cost;       // summed input edge costs
    double conflict;   // p of the last scoring
    int64_t argmin;    // a class attaining p (the clusters' class when they agree)
    double t;          // score of the last scoring (NaN: must be re-scored)
    int64_t id;        // lowest input edge id among the summed edges (tie-break)
    uint32_t version;  // bumped when the scoring changes or the edge dies: older entries are stale
    bool alive;

    int64_t other(int64_t cluster) const { return u == cluster ? v : u; }
};

struct QueueEntry {
    double t;
    int64_t id;
    int64_t edge;
    uint32_t version;
};

// Max-heap order: larger t first, then lower edge id (ids of live edges are unique).
struct QueueOrder {
    bool operator()(const QueueEntry& a, const QueueEntry& b) const {
        if (a.t != b.t) return a.t < b.t;
        return a.id > b.id;
    }
};

struct Filed {
    double conflict;
    int64_t edge;
    uint32_t version;
    bool operator<(const Filed& other) const { return conflict < other.conflict; }
};

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr double kUnscored = std::numeric_limits<double>::quiet_NaN();

class GreedyContraction {
  public:
    GreedyContraction(int64_t num_nodes, int64_t num_classes, const double* node_costs,
                      const uint8_t* label_mask, const int64_t* image_index)
        : n_(num_nodes), k_(num_classes), cost_(node_costs, node_costs + num_nodes * num_classes),
          min_(num_nodes), gap_(num_nodes), best_(num_nodes), parent_(num_nodes),
          adjacency_(num_nodes), hot_(num_nodes), cold_(num_nodes), forbidden_(label_mask),
          image_(image_index) {
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
            edges_.push_back(Edge{a, b, costs[e], 0.0, -1, kUnscored, ids[e], 0, true});
            adjacency_[a][b] = e;
            adjacency_[b][a] = e;
        }
    }

    int64_t run() {
        for (int64_t e = 0; e < static_cast<int64_t>(edges_.size()); ++e) rescore(e);
        int64_t merges = 0;
        while (!queue_.empty()) {
            const QueueEntry top = queue_.top();
            queue_.pop();
            if (!valid(top.edge, top.version)) continue;  // lazy invalidation
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

    // p of an edge and the (lowest) class attaining it.
    std::pair<double, int64_t> conflict(const Edge& e) const {
        if (best_[e.u] == best_[e.v]) return {0.0, best_[e.u]};
        double p = kInfinity;
        int64_t arg = -1;
        for (int64_t k = 0; k < k_; ++k) {
            if (!allowed(e.u, k)) continue;
            const double value = margin(e.u, k) + margin(e.v, k);
            if (value < p) p = value, arg = k;
        }
        return {p, arg};
    }

    bool valid(int64_t e, uint32_t version) const {
        return edges_[e].alive && edges_[e].version == version;
    }

    // File edge e with cluster c: cold if c's growth provably cannot change its score.
    void file(int64_t e, int64_t c) {
        const Edge& edge = edges_[e];
        if (edge.argmin == best_[c] && edge.conflict <= gap_[c])
            cold_[c].push(Filed{edge.conflict, e, edge.version});
        else
            hot_[c].push_back(Filed{edge.conflict, e, edge.version});
    }

    // Score edge e again; if anything changed, queue it (t > 0) and file it at both ends.
    bool rescore(int64_t e) {
        Edge& edge = edges_[e];
        const auto [p, arg] = conflict(edge);
        const double t = edge.cost - p;
        if (t == edge.t && p == edge.conflict && arg == edge.argmin) return false;
        edge.t = t;
        edge.conflict = p;
        edge.argmin = arg;
        ++edge.version;
        if (t > 0) queue_.push(QueueEntry{t, edge.id, e, edge.version});
        file(e, edge.u);
        file(e, edge.v);
        return true;
    }

    void rescore_forced(int64_t e) {
        edges_[e].t = kUnscored;
        rescore(e);
    }

    void kill(int64_t e) {
        edges_[e].alive = false;
        ++edges_[e].version;
    }

    // Cluster s grew: re-score its edges whose score may have changed.
    void refresh(int64_t s, int64_t previous_class) {
#ifndef GPUCOPS_RESCORE_ALL
        if (best_[s] == previous_class) {
            std::vector<Filed> hot;
            hot.swap(hot_[s]);
            for (const Filed& entry : hot)
                if (valid(entry.edge, entry.version) && !rescore(entry.edge)) file(entry.edge, s);
            auto& cold = cold_[s];
            while (!cold.empty() && cold.top().conflict > gap_[s]) {
                const Filed entry = cold.top();
                cold.pop();
                if (valid(entry.edge, entry.version) && !rescore(entry.edge)) file(entry.edge, s);
            }
            return;
        }
#endif
        hot_[s].clear();
        cold_[s] = {};
        for (const auto& [neighbour, e] : adjacency_[s])
            if (!rescore(e)) file(e, s);
    }

    // Contract edge e: the cluster with fewer neighbours is absorbed into the other.
    void contract(int64_t e) {
        int64_t keep = edges_[e].u, gone = edges_[e].v;
        if (adjacency_[gone].size() > adjacency_[keep].size() ||
            (adjacency_[gone].size() == adjacency_[keep].size() && gone < keep))
            std::swap(keep, gone);
        kill(e);
        adjacency_[keep].erase(gone);
        adjacency_[gone].erase(keep);

        const int64_t previous_class = best_[keep];
        double* target = cost_.data() + keep * k_;
        const double* source = costs_of(gone);
        for (int64_t k = 0; k < k_; ++k) target[k] += source[k];
        update_class(keep);
        parent_[gone] = keep;
        refresh(keep, previous_class);

        // gone's edges: summed into keep's parallel edge, or moved to keep
        for (const auto& [neighbour, moved] : adjacency_[gone]) {
            adjacency_[neighbour].erase(gone);
            const auto found = adjacency_[keep].find(neighbour);
            if (found != adjacency_[keep].end()) {
                Edge& kept = edges_[found->second];
                kept.cost += edges_[moved].cost;
                kept.id = std::min(kept.id, edges_[moved].id);
                kill(moved);
                rescore_forced(found->second);  // forced: its id may change with its score not
            } else {
                Edge& edge = edges_[moved];
                (edge.u == gone ? edge.u : edge.v) = keep;
                adjacency_[keep][neighbour] = moved;
                adjacency_[neighbour][keep] = moved;
                rescore_forced(moved);  // forced: it is now filed with keep
            }
        }
        std::unordered_map<int64_t, int64_t>().swap(adjacency_[gone]);  // free gone's memory
        std::vector<Filed>().swap(hot_[gone]);
        cold_[gone] = {};
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
    std::vector<std::unordered_map<int64_t, int64_t>> adjacency_;  // neighbour cluster → edge
    std::vector<std::vector<Filed>> hot_;                         // edges re-scored on growth
    std::vector<std::priority_queue<Filed>> cold_;                // by p: popped once p > gap
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
