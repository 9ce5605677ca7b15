// The control plane of a node leader: spreads a node's failure to every other node, over the
// kChanControl links of tree 0 and the Transport interface only.
//
// Contract: once started, a failure of this node (NodeShm::aborted) is sent once to every
// neighbour; an abort received from a neighbour, or a neighbour's link closing without a goodbye,
// aborts this node (and so is passed on to the other neighbours: it floods the tree). stop() says
// goodbye so that a clean shutdown is never mistaken for a lost peer.
// Threading: one thread of its own between start() and stop(); start/stop from one thread only. The
// transport's control channel belongs to it alone.
#pragma once

#include <atomic>
#include <thread>
#include <vector>

#include "hfreduce/intra_node.h"
#include "hfreduce/transport.h"

namespace hfreduce {

class ControlPlane {
 public:
  // `neighbours` are the node ids this node's control links go to; `tr` and `shm` outlive it.
  ControlPlane(Transport& tr, NodeShm& shm, std::vector<int> neighbours);
  ~ControlPlane() { stop(); }
  void start();
  // Sends goodbye to every open link and joins the thread (idempotent).
  void stop();

 private:
  void loop();

  Transport& tr_;
  NodeShm& shm_;
  std::vector<int> neighbours_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

}  // namespace hfreduce
