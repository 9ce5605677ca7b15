// Inter-node allreduce among node leaders, over the Transport interface only.
// An algorithm allreduces, in place, one span of a result slot per call; a channel is run by its
// own thread(s) so that the two trees of the double binary tree (or the ring) work in parallel
// and chunks pipeline: the up pass of chunk i+1 overlaps the down pass of chunk i.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "hfreduce/reduce_kernels.h"
#include "hfreduce/transport.h"

namespace hfreduce {

enum class InterAlgo : int { kDoubleTree = 0, kRing = 1 };

// One binary tree over nodes 0..n-1: parent (-1 for the root) and up to two children.
struct TreeLinks {
  int parent = -1;
  int kids[2] = {-1, -1};
  int nkids() const { return (kids[0] >= 0) + (kids[1] >= 0); }
};

// NCCL 2.4's double binary tree: tree 0 is a balanced in-order binary tree, tree 1 its mirror
// (even n) or its shift by one (odd n), so that interior nodes of one tree are leaves of the other.
TreeLinks btree(int n, int node);
TreeLinks dtree(int n, int node, int tree);

// Channels: 0 and 1 carry the two trees' halves, 2 the ring; 3 is the control plane (aborts).
constexpr int kChanTree0 = 0, kChanTree1 = 1, kChanRing = 2, kChanControl = 3;

// Every (peer, channel) link node `node` needs for `algo` among `n` nodes (tree 0 and the control
// plane are always connected: agreement and abort messages travel over tree 0's edges).
std::vector<std::pair<int, int>> links_for(InterAlgo algo, int n, int node);

// The part [begin, end) of a chunk of `count` elements that tree `t` (0/1) carries.
std::pair<size_t, size_t> tree_half(size_t count, int t);

// The up (reduce) pass of one tree for one span: receive each child's partial, add, send to the parent.
void tree_up(Transport& tr, const TreeLinks& tl, int channel, DType t, char* span, size_t count, char* tmp,
             double timeout_s);
// The down (broadcast) pass: receive the result from the parent, forward it to the children.
void tree_down(Transport& tr, const TreeLinks& tl, int channel, char* span, size_t bytes, double timeout_s);
// Ring allreduce (reduce-scatter then allgather) of one span among n nodes.
void ring_allreduce(Transport& tr, int n, int node, DType t, char* span, size_t count, char* tmp, double timeout_s);

}  // namespace hfreduce
