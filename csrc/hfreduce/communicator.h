// The HFReduce communicator of one rank: the chunk pipeline (copy-in, intra-node reduce,
// inter-node exchange, copy-out) and the queue of asynchronous collectives.
//
// Threading: submit() may be called from any thread; collectives run one at a time, in submission
// order, on the communicator's worker thread (ranks must submit the same sequence of collectives).
// On node leaders of multi-node jobs, extra threads run the inter-node channels and the control
// plane (control_plane.h). Which call each rank made is settled first (agreement.h); the wire is
// reached only through the Transport interface (transport.h). After a timeout or a lost peer the
// communicator is failed: every later call raises.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hfreduce/error.h"
#include "hfreduce/inter_node.h"
#include "hfreduce/intra_node.h"
#include "hfreduce/reduce_kernels.h"
#include "hfreduce/control_plane.h"
#include "hfreduce/transport.h"

namespace hfreduce {

enum class CollKind : int32_t { kAllreduce = 0, kBroadcast = 1, kReduce = 2 };
enum class ReduceOp : int32_t { kSum = 0, kAvg = 1 };

struct Config {
  int rank = 0, world_size = 1;
  int local_rank = 0, local_size = 1;
  int node = 0, num_nodes = 1;
  std::vector<int> local_ranks;   // global rank of each local rank of this node
  std::vector<int> node_leaders;  // global rank of each node's leader
  std::string shm_name;
  uint64_t job_id = 0;
  size_t chunk_bytes = 1 << 20;
  int depth = 4;
  size_t heap_bytes = 1ull << 30;
  double timeout_s = 30.0;
  InterAlgo algo = InterAlgo::kDoubleTree;
  size_t streaming_threshold_bytes = 8u << 20;
  bool debug = false;  // HFREDUCE_DEBUG=1: log each collective's entry and exit on stderr
};

// Completion state of one submitted collective (shared with the Python Work handle).
class WorkState {
 public:
  bool done() const { return done_.load(std::memory_order_acquire); }
  // Waits up to timeout_s (< 0: forever); returns whether it completed. Does not throw.
  bool wait(double timeout_s);
  bool failed() const { return failed_; }
  ErrorKind error_kind() const { return kind_; }
  const std::string& error_message() const { return msg_; }
  void finish(bool failed, ErrorKind kind, std::string msg);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> done_{false};
  bool failed_ = false;
  ErrorKind kind_ = ErrorKind::kUsage;
  std::string msg_;
};

class Communicator {
 public:
  // Phase 1: maps (or creates) the node segment; leaders of multi-node jobs start listening.
  explicit Communicator(const Config& cfg);
  ~Communicator();
  // This leader's listening port (0 when there is no inter-node stage).
  int port() const { return transport_ ? transport_->port() : 0; }
  // Phase 2 (leaders of multi-node jobs): connect to the other leaders, start the threads.
  void connect(const std::vector<Endpoint>& leaders);
  // Removes the segment's name from /dev/shm (idempotent; the leader's constructor already did, once
  // every local rank had mapped it).
  void unlink_shm() { shm_->unlink_name(); }

  // `part_of`/`elem_dtype`/`part_root` name the composite collective this call is a step of ("" / -1: none);
  // they are compared across ranks like the rest of the call.
  std::shared_ptr<WorkState> submit(CollKind kind, ReduceOp op, int root, DType dtype, void* ptr, size_t count,
                                    const std::string& part_of = "", const std::string& elem_dtype = "",
                                    int part_root = -1);
  // Stops the threads after the queued collectives (or at once if failed) and says goodbye to peers.
  void shutdown();

  const Config& config() const { return cfg_; }
  NodeShm& shm() { return *shm_; }
  bool failed() const { return shm_->aborted(); }
  std::string failure() const;

 private:
  struct Op {
    OpDesc desc;
    void* ptr = nullptr;
    size_t bytes = 0;
    std::shared_ptr<WorkState> work;
  };
  struct NetOp {
    uint64_t seq = 0;
    DType dtype = DType::kFloat32;
    size_t count = 0;
    uint64_t nchunks = 0;
    size_t chunk_elems = 0;
  };

  void worker_loop();
  void run_op(Op& op, uint64_t seq);
  void data_phase(Op& op, uint64_t seq);
  void net_thread(int channel, bool up);
  // Aborts the node with this failure unless another cause arrives first (see kCauseGraceS).
  void fail_node(ErrorKind kind, const std::string& msg);
  bool next_net_op(size_t* index, NetOp* out);

  Config cfg_;
  std::unique_ptr<NodeShm> shm_;
  std::unique_ptr<Transport> transport_;
  uint64_t seq_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  bool stopping_ = false;
  std::thread worker_;

  // Inter-node threads (leaders of multi-node jobs only).
  std::mutex net_mu_;
  std::condition_variable net_cv_;
  std::vector<NetOp> net_ops_;
  bool net_stop_ = false;
  std::vector<std::thread> net_threads_;
  std::unique_ptr<ControlPlane> control_;
  std::vector<int> used_channels_;
};

}  // namespace hfreduce
