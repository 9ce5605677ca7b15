#include <algorithm>

#include "hfreduce/inter_node.h"

namespace hfreduce {

void ring_allreduce(Transport& tr, int n, int node, DType t, char* span, size_t count, char* tmp, double timeout_s) {
  if (n <= 1 || count == 0) return;
  const size_t esz = dtype_size(t);
  const size_t seg = (count + n - 1) / n;
  auto seg_range = [&](int j) {
    size_t b = std::min(count, static_cast<size_t>(j) * seg);
    size_t e = std::min(count, b + seg);
    return std::make_pair(b, e);
  };
  const int next = (node + 1) % n, prev = (node - 1 + n) % n;
  // Reduce-scatter: after n-1 steps this node holds the full sum of segment (node+1) % n.
  for (int k = 0; k < n - 1; ++k) {
    auto [sb, se] = seg_range(((node - k) % n + n) % n);
    auto [rb, re] = seg_range(((node - k - 1) % n + n) % n);
    tr.sendrecv(next, span + sb * esz, (se - sb) * esz, prev, tmp, (re - rb) * esz, kChanRing,
                Deadline::after_s(timeout_s));
    const void* ins[2] = {span + rb * esz, tmp};
    reduce_sum(t, span + rb * esz, ins, 2, re - rb, false);
  }
  // Allgather the reduced segments.
  for (int k = 0; k < n - 1; ++k) {
    auto [sb, se] = seg_range(((node + 1 - k) % n + n) % n);
    auto [rb, re] = seg_range(((node - k) % n + n) % n);
    tr.sendrecv(next, span + sb * esz, (se - sb) * esz, prev, span + rb * esz, (re - rb) * esz, kChanRing,
                Deadline::after_s(timeout_s));
  }
}

}  // namespace hfreduce
