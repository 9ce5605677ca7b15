// Cross-rank agreement: before any byte of collective #seq moves, every rank of the job learns
// whether all ranks made the same call (kind, dtype, op, root, count, and for a step of a composite
// collective its name, element dtype and root) and with a valid root.
//
// Contract: either every rank gets the same Verdict (ok, or the same error message naming the two
// ranks whose calls differ and what each called) or the wait for it fails with kTimeout/kPeerLost
// and the node is aborted. A failed verdict moves no data, so the ranks stay in step and the
// communicator stays usable. Stages: agree_local (every local rank, from the node segment), then on
// node leaders of multi-node jobs agree_inter_node (up tree 0 and back down, over the Transport), then
// publish_verdict (leader) / await_verdict (other local ranks) through the segment's header.
// Threading: called by the communicator's worker thread only, once per collective, in sequence order.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "hfreduce/error.h"
#include "hfreduce/intra_node.h"
#include "hfreduce/transport.h"

namespace hfreduce {

struct Verdict {
  bool ok = true;
  ErrorKind kind = ErrorKind::kMismatch;
  std::string msg;  // empty when ok
};

// "allreduce of 1031 float32 elements, op=sum" (and ", root=R" for rooted collectives, and
// " (a step of allgather of int64)" for a step of a composite collective).
std::string describe(const OpDesc& d);
// Whether two ranks' calls are the same collective, composite part included (residency and heap
// offsets may differ).
bool same_call(const OpDesc& a, const OpDesc& b);

// Compares the OpDesc every local rank posted for collective `seq` (all of them must have posted).
Verdict agree_local(const NodeShm& sh, uint64_t seq, int world_size, int rank);
// Node leaders: combines this node's verdict with every other node's over tree 0 (kChanTree0);
// `desc` is this node's call, `rank` the leader's global rank. Throws Error on timeout or a lost peer.
Verdict agree_inter_node(Transport& tr, int num_nodes, int node, int rank, const OpDesc& desc, const Verdict& local,
                         uint64_t seq, double timeout_s);
// The leader hands the job-wide verdict of `seq` to its local ranks, which wait for it (NodeShm::wait
// rules: the node's abort, the deadline, and a dead leader end the wait with an Error).
void publish_verdict(NodeShm& sh, uint64_t seq, const Verdict& v);
Verdict await_verdict(NodeShm& sh, uint64_t seq, const std::function<std::string()>& what);

}  // namespace hfreduce
