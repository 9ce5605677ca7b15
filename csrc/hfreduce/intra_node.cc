#include "hfreduce/intra_node.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace hfreduce {

namespace {

constexpr uint64_t kMagic = 0x48465245445543ULL;  // "HFREDUC"
constexpr size_t kPage = 4096;

size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

std::mutex g_heap_mu;

void futex_wait(std::atomic<uint32_t>* addr, uint32_t expected, int timeout_ms) {
  struct timespec ts;
  ts.tv_sec = timeout_ms / 1000;
  ts.tv_nsec = (timeout_ms % 1000) * 1000000L;
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>* addr) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// Whether `pid` still runs. A killed rank stays a zombie until its parent (a launcher) reaps it, and
// kill(pid, 0) succeeds on zombies, so look at its state too: a zombie counts as dead.
bool process_alive(int pid) {
  if (pid <= 0) return true;
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return true;  // no /proc (or not ours to read): trust kill()
  char buf[512];
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* paren = std::strrchr(buf, ')');  // "pid (comm) S ...": comm may contain spaces and parens
  if (!paren || paren[1] != ' ') return true;
  return paren[2] != 'Z' && paren[2] != 'X';
}

}  // namespace

NodeShm::NodeShm(const std::string& name, bool create, int local_rank, int local_size, const int* global_ranks,
                 size_t chunk_bytes, int depth, size_t heap_bytes, double timeout_s)
    : local_rank_(local_rank), local_size_(local_size), chunk_bytes_(chunk_bytes), depth_(depth),
      timeout_s_(timeout_s) {
  if (local_size < 1 || local_size > kMaxLocalRanks)
    throw Error(ErrorKind::kUsage, "local world size " + std::to_string(local_size) + " is outside 1.." +
                                       std::to_string(kMaxLocalRanks));
  for (int r = 0; r < local_size; ++r) global_ranks_[r] = global_ranks[r];
  const size_t header = round_up(sizeof(NodeHeader), kPage);
  const size_t results = round_up(depth * chunk_bytes, kPage);
  const size_t staging = round_up(static_cast<size_t>(local_size) * depth * chunk_bytes, kPage);
  heap_bytes = round_up(heap_bytes, kPage);
  const size_t total = header + results + staging + static_cast<size_t>(local_size) * heap_bytes;
  if (create) {
    seg_ = ShmSegment::create(name, total);
    hdr_ = static_cast<NodeHeader*>(seg_->data());
    std::memset(static_cast<void*>(hdr_), 0, sizeof(NodeHeader));
    hdr_->local_size = local_size;
    hdr_->depth = depth;
    hdr_->chunk_bytes = chunk_bytes;
    hdr_->result_off = header;
    hdr_->staging_off = header + results;
    hdr_->heap_off = header + results + staging;
    hdr_->heap_bytes = heap_bytes;
    seg_->pretouch(0, header + results + staging);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    reinterpret_cast<std::atomic<uint64_t>*>(&hdr_->magic)->store(kMagic, std::memory_order_release);
  } else {
    Deadline dl = Deadline::after_s(timeout_s);
    seg_ = ShmSegment::attach(name, total, dl);
    hdr_ = static_cast<NodeHeader*>(seg_->data());
    while (reinterpret_cast<std::atomic<uint64_t>*>(&hdr_->magic)->load(std::memory_order_acquire) != kMagic) {
      if (dl.expired()) throw Error(ErrorKind::kTimeout, "segment " + name + " was never initialised by the node leader");
      usleep(1000);
    }
    if (hdr_->local_size != static_cast<uint32_t>(local_size) || hdr_->chunk_bytes != chunk_bytes ||
        hdr_->depth != static_cast<uint32_t>(depth) || hdr_->heap_bytes != heap_bytes)
      throw Error(ErrorKind::kMismatch, "rank " + std::to_string(global_ranks[local_rank]) +
                                            ": HFREDUCE_* settings (chunk, depth, heap) differ from the node leader's");
  }
  RankSlot& me = slot(local_rank);
  me.global_rank = global_ranks[local_rank];
  me.pid.store(getpid(), std::memory_order_release);
  free_[0] = heap_bytes;
  if (create) {
    // Every local rank registers its pid right after mapping the segment; once all have, nobody needs
    // the name again, so remove it now: a crash from here on (even SIGKILL of every rank) leaks nothing.
    // Waiting for the job-wide start-up exchange instead would leave the name in /dev/shm for as long as
    // any other node is slow to start.
    Deadline dl = Deadline::after_s(timeout_s);
    for (int r = 0; r < local_size; ++r) {
      while (slot(r).pid.load(std::memory_order_acquire) == 0) {
        if (dl.expired())
          throw Error(ErrorKind::kTimeout, "rank " + std::to_string(global_ranks[r]) + " (local rank " + std::to_string(r) +
                                               ") never mapped the node's segment " + name + " (HFREDUCE_TIMEOUT_S)");
        usleep(200);
      }
    }
    seg_->unlink();
  }
}

NodeShm::~NodeShm() = default;

void NodeShm::wake() {
  hdr_->futex_gen.fetch_add(1, std::memory_order_seq_cst);
  if (hdr_->waiters.load(std::memory_order_seq_cst) > 0) futex_wake_all(&hdr_->futex_gen);
}

void NodeShm::check_abort() const {
  uint32_t st = hdr_->abort_state.load(std::memory_order_acquire);
  if (st == 0) return;
  for (int i = 0; i < 1000 && st != 2; ++i) {
    usleep(100);
    st = hdr_->abort_state.load(std::memory_order_acquire);
  }
  if (st != 2) throw Error(ErrorKind::kAborted, "hfreduce: the node's communicator failed");
  throw Error(static_cast<ErrorKind>(hdr_->abort_kind), std::string(hdr_->abort_msg));
}

void NodeShm::abort(ErrorKind kind, const std::string& msg) {
  uint32_t expected = 0;
  if (hdr_->abort_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    hdr_->abort_kind = static_cast<int32_t>(kind);
    std::snprintf(hdr_->abort_msg, sizeof(hdr_->abort_msg), "%s", msg.c_str());
    hdr_->abort_state.store(2, std::memory_order_release);
  }
  wake();
}

void NodeShm::wait(const std::function<int()>& ready, const std::function<std::string()>& what, double extra_s) {
  int who = ready();
  if (who == -1) return;
  const auto start = Clock::now();
  const auto spin_until = start + std::chrono::microseconds(30);
  while (Clock::now() < spin_until) {
    for (int i = 0; i < 32; ++i) _mm_pause();
    if ((who = ready()) == -1) return;
  }
  const double limit_s = timeout_s_ + slack_s_ + extra_s;
  Deadline dl = Deadline::after_s(limit_s);
  int last_who = who;
  auto last_liveness = Clock::now();
  while (true) {
    check_abort();
    hdr_->waiters.fetch_add(1, std::memory_order_seq_cst);
    uint32_t gen = hdr_->futex_gen.load(std::memory_order_seq_cst);
    who = ready();
    if (who != -1) futex_wait(&hdr_->futex_gen, gen, 10);
    hdr_->waiters.fetch_sub(1, std::memory_order_seq_cst);
    if (who == -1 || (who = ready()) == -1) return;
    if (who != last_who) {  // progress: someone else is the laggard now, restart the clock
      last_who = who;
      dl = Deadline::after_s(limit_s);
    }
    auto now = Clock::now();
    if (who >= 0 && now - last_liveness > std::chrono::milliseconds(20)) {
      last_liveness = now;
      int pid = slot(who).pid.load(std::memory_order_acquire);
      if (!process_alive(pid)) {
        std::string msg = "hfreduce: rank " + std::to_string(global_rank(who)) + " (local rank " +
                          std::to_string(who) + ", pid " + std::to_string(pid) + ") died during " + what();
        abort(ErrorKind::kPeerLost, msg);
        throw Error(ErrorKind::kPeerLost, msg);
      }
    }
    if (dl.expired()) {
      check_abort();
      std::string who_s = who >= 0 ? "rank " + std::to_string(global_rank(who)) + " (local rank " + std::to_string(who) + ")"
                                   : "the node leader's network stage";
      char t[64];
      std::snprintf(t, sizeof(t), "%g s (timeout %g s)", limit_s, timeout_s_);
      std::string msg = "hfreduce: timed out after " + std::string(t) + " waiting for " + who_s +
                        " during " + what() + "; that rank is lost or stuck";
      abort(ErrorKind::kTimeout, msg);
      throw Error(ErrorKind::kTimeout, msg);
    }
  }
}

void NodeShm::wait_all(std::atomic<uint64_t> RankSlot::*field, uint64_t target,
                       const std::function<std::string()>& what) {
  // On failure, say which local ranks had reached this step and which had not.
  auto what_with_ranks = [&]() {
    std::string had, had_not;
    for (int r = 0; r < local_size_; ++r) {
      std::string& list = (hdr_->ranks[r].*field).load(std::memory_order_acquire) >= target ? had : had_not;
      list += (list.empty() ? "" : ", ") + std::to_string(global_rank(r));
    }
    return what() + " (ranks of this node that had arrived: [" + had + "], had not: [" + had_not + "])";
  };
  wait(
      [&]() -> int {
        for (int r = 0; r < local_size_; ++r)
          if ((hdr_->ranks[r].*field).load(std::memory_order_acquire) < target) return r;
        return -1;
      },
      what_with_ranks);
}

uint64_t NodeShm::heap_alloc(size_t bytes) {
  std::lock_guard<std::mutex> lk(g_heap_mu);
  bytes = round_up(bytes == 0 ? 1 : bytes, 256);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second >= bytes) {
      uint64_t off = it->first;
      uint64_t rest = it->second - bytes;
      free_.erase(it);
      if (rest) free_[off + bytes] = rest;
      used_[off] = bytes;
      return off;
    }
  }
  throw Error(ErrorKind::kUsage, "hfreduce: shared-memory heap exhausted (" + std::to_string(bytes) +
                                     " bytes requested, HFREDUCE_SHM_HEAP_BYTES=" + std::to_string(heap_bytes()) +
                                     " per rank)");
}

void NodeShm::heap_free(uint64_t offset) {
  std::lock_guard<std::mutex> lk(g_heap_mu);
  auto u = used_.find(offset);
  if (u == used_.end()) return;
  uint64_t size = u->second;
  used_.erase(u);
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + size == next->first) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += size;
      return;
    }
  }
  free_[offset] = size;
}

bool NodeShm::in_own_heap(const void* p, size_t bytes, uint64_t* offset) const {
  const char* h = heap(local_rank_);
  const char* c = static_cast<const char*>(p);
  if (c >= h && c + bytes <= h + heap_bytes()) {
    *offset = static_cast<uint64_t>(c - h);
    return true;
  }
  return false;
}

}  // namespace hfreduce
