// The node's shared segment and the synchronisation of its local ranks.
//
// Layout (offsets page-aligned): NodeHeader | result slots (depth x chunk) | staging slots
// (local_size x depth x chunk) | heaps (local_size x heap_bytes). Local rank r writes only its own
// RankSlot, its own staging slots and its own heap; the reducer of slice r writes slice r of the
// outputs. Progress counters are "op sequence << 32 | chunk+1" so they only ever grow.
// Waiting: spin briefly, then sleep on a futex in the header with a short timeout, checking the
// node's abort flag, the deadline and whether the awaited rank's process still exists.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "hfreduce/error.h"
#include "hfreduce/shm_segment.h"

namespace hfreduce {

constexpr int kMaxLocalRanks = 64;
constexpr int kMaxChannels = 4;

inline uint64_t progress(uint64_t seq, uint64_t chunk) { return (seq << 32) | (chunk + 1); }

// What a rank asks for in one collective; compared across ranks before any data moves.
struct OpDesc {
  int32_t kind = 0;   // CollKind
  int32_t dtype = 0;  // DType
  int32_t op = 0;     // ReduceOp
  int32_t root = 0;
  uint64_t count = 0;
  int32_t resident = 0;  // buffer lives in this rank's heap
  int32_t part_root = -1;  // the composite collective's root (gather/scatter), -1 if none
  uint64_t heap_offset = 0;  // offset of the buffer inside the rank's heap when resident
  // When this call is one step of a composite collective (allgather, ...): its name and the user's
  // element dtype, so that ranks disagreeing on those are told so ("" for a plain call).
  char part_of[16] = {};
  char elem_dtype[16] = {};
};

struct alignas(64) RankSlot {
  std::atomic<int32_t> pid;
  int32_t global_rank;
  std::atomic<uint64_t> posted_seq;
  OpDesc desc;
  alignas(64) std::atomic<uint64_t> arrived;
  alignas(64) std::atomic<uint64_t> reduced;
  alignas(64) std::atomic<uint64_t> done;
  alignas(64) std::atomic<uint64_t> completed_ops;
};

struct NodeHeader {
  uint64_t magic;
  uint32_t local_size;
  uint32_t depth;
  uint64_t chunk_bytes;
  uint64_t result_off, staging_off, heap_off, heap_bytes;
  alignas(64) std::atomic<uint32_t> futex_gen;
  std::atomic<uint32_t> waiters;
  alignas(64) std::atomic<uint32_t> abort_state;  // 0 none, 1 writing, 2 message ready
  int32_t abort_kind;
  char abort_msg[1024];
  alignas(64) std::atomic<uint64_t> verdict_seq;
  int32_t verdict_ok;
  int32_t verdict_kind;
  char verdict_msg[1024];
  alignas(64) std::atomic<uint64_t> net_done[kMaxChannels];
  alignas(64) std::atomic<uint64_t> net_up[kMaxChannels];
  RankSlot ranks[kMaxLocalRanks];
};

class NodeShm {
 public:
  // Leader (local rank 0) creates, waits until every local rank has attached (registered its pid) and
  // removes the name from /dev/shm; the others attach. `global_ranks[r]` names local rank r in errors.
  NodeShm(const std::string& name, bool create, int local_rank, int local_size, const int* global_ranks,
          size_t chunk_bytes, int depth, size_t heap_bytes, double timeout_s);
  ~NodeShm();

  void unlink_name() { seg_->unlink(); }
  NodeHeader* hdr() const { return hdr_; }
  RankSlot& slot(int r) const { return hdr_->ranks[r]; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  int global_rank(int r) const { return global_ranks_[r]; }
  size_t chunk_bytes() const { return chunk_bytes_; }
  int depth() const { return depth_; }
  char* base() const { return static_cast<char*>(seg_->data()); }
  char* result_slot(uint64_t chunk) const { return base() + hdr_->result_off + (chunk % depth_) * chunk_bytes_; }
  char* staging_slot(int r, uint64_t chunk) const {
    return base() + hdr_->staging_off + (static_cast<size_t>(r) * depth_ + chunk % depth_) * chunk_bytes_;
  }
  char* heap(int r) const { return base() + hdr_->heap_off + static_cast<size_t>(r) * hdr_->heap_bytes; }
  size_t heap_bytes() const { return hdr_->heap_bytes; }
  double timeout_s() const { return timeout_s_; }
  // Extra seconds every wait() allows on node segments of multi-node jobs, where any local wait may be
  // blocked behind the network: the transport's own timeout (which names the remote node) fires first.
  void set_wait_slack_s(double s) { slack_s_ = s; }

  // Wakes every waiter of the node (after publishing a counter).
  void wake();
  // Blocks until `ready()` returns -1. While it returns r >= 0 (the local rank being waited
  // for, or kNoRank) the deadline (timeout_s + slack + extra_s) runs; on expiry or death of that rank it aborts the node with a
  // message naming the rank and `what()`, and throws.
  static constexpr int kNoRank = -2;
  void wait(const std::function<int()>& ready, const std::function<std::string()>& what, double extra_s = 0);
  // Wait until every local rank's `field` reached `target`.
  void wait_all(std::atomic<uint64_t> RankSlot::*field, uint64_t target, const std::function<std::string()>& what);

  // Marks the node failed with `msg` (first caller wins) and wakes everyone. Never throws.
  void abort(ErrorKind kind, const std::string& msg);
  bool aborted() const { return hdr_->abort_state.load(std::memory_order_acquire) != 0; }
  // Throws the node's abort error if there is one.
  void check_abort() const;

  // Per-rank heap of shm-resident buffers (this rank's heap only). Offsets are 256-byte aligned.
  uint64_t heap_alloc(size_t bytes);
  void heap_free(uint64_t offset);
  bool in_own_heap(const void* p, size_t bytes, uint64_t* offset) const;

 private:
  std::unique_ptr<ShmSegment> seg_;
  NodeHeader* hdr_;
  int local_rank_, local_size_;
  int global_ranks_[kMaxLocalRanks];
  size_t chunk_bytes_;
  int depth_;
  double timeout_s_;
  double slack_s_ = 0;
  std::map<uint64_t, uint64_t> free_;  // offset -> size
  std::map<uint64_t, uint64_t> used_;
};

}  // namespace hfreduce
