#include <algorithm>

#include "hfreduce/inter_node.h"

namespace hfreduce {

TreeLinks btree(int n, int node) {
  TreeLinks tl;
  if (n <= 1) return tl;
  int bit = 1;
  while (bit < n && !(bit & node)) bit <<= 1;
  if (node == 0) {
    // The root has a single child: the top of the in-order tree over 1..n-1.
    int top = 1;
    while (top * 2 < n) top <<= 1;
    tl.kids[0] = top;
    return tl;
  }
  int up = (node ^ bit) | (bit << 1);
  if (up >= n) up = node ^ bit;
  tl.parent = up;
  int low = bit >> 1;
  if (low > 0) {
    tl.kids[0] = node - low;
    int d1 = node + low;
    while (low > 0 && d1 >= n) {
      low >>= 1;
      d1 = node + low;
    }
    tl.kids[1] = (low > 0 && d1 < n) ? d1 : -1;
  }
  return tl;
}

TreeLinks dtree(int n, int node, int tree) {
  if (tree == 0) return btree(n, node);
  TreeLinks tl;
  auto map = [&](int x, bool inverse) {
    if (x < 0) return -1;
    if (n % 2 == 0) return n - 1 - x;                 // mirror (its own inverse)
    return inverse ? (x + 1) % n : (x - 1 + n) % n;  // shift by one
  };
  TreeLinks b = btree(n, map(node, false));
  tl.parent = map(b.parent, true);
  tl.kids[0] = map(b.kids[0], true);
  tl.kids[1] = map(b.kids[1], true);
  return tl;
}

std::vector<std::pair<int, int>> links_for(InterAlgo algo, int n, int node) {
  std::vector<std::pair<int, int>> out;
  if (n <= 1) return out;
  auto add_tree = [&](int tree, int channel) {
    TreeLinks tl = dtree(n, node, tree);
    if (tl.parent >= 0) out.emplace_back(tl.parent, channel);
    for (int k : tl.kids)
      if (k >= 0) out.emplace_back(k, channel);
  };
  add_tree(0, kChanTree0);
  add_tree(0, kChanControl);
  if (algo == InterAlgo::kDoubleTree) {
    add_tree(1, kChanTree1);
  } else {
    out.emplace_back((node + 1) % n, kChanRing);
    out.emplace_back((node - 1 + n) % n, kChanRing);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::pair<size_t, size_t> tree_half(size_t count, int t) {
  size_t half = (count + 1) / 2;
  half = std::min(count, (half + 63) / 64 * 64);  // keep SIMD-friendly boundaries
  return t == 0 ? std::make_pair<size_t, size_t>(0, std::move(half)) : std::make_pair(half, count);
}

void tree_up(Transport& tr, const TreeLinks& tl, int channel, DType t, char* span, size_t count, char* tmp,
             double timeout_s) {
  const size_t bytes = count * dtype_size(t);
  if (bytes == 0) return;
  for (int kid : tl.kids) {
    if (kid < 0) continue;
    tr.recv(kid, channel, tmp, bytes, Deadline::after_s(timeout_s));
    const void* ins[2] = {span, tmp};
    reduce_sum(t, span, ins, 2, count, false);
  }
  if (tl.parent >= 0) tr.send(tl.parent, channel, span, bytes, Deadline::after_s(timeout_s));
}

void tree_down(Transport& tr, const TreeLinks& tl, int channel, char* span, size_t bytes, double timeout_s) {
  if (bytes == 0) return;
  if (tl.parent >= 0) tr.recv(tl.parent, channel, span, bytes, Deadline::after_s(timeout_s));
  for (int kid : tl.kids)
    if (kid >= 0) tr.send(kid, channel, span, bytes, Deadline::after_s(timeout_s));
}

}  // namespace hfreduce
