#include "hfreduce/communicator.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "hfreduce/agreement.h"

namespace hfreduce {

namespace {

constexpr size_t kSliceAlignElems = 64;
// Multi-node: local waits allow this much beyond the timeout, so that a stuck remote node is reported
// by the transport (naming that node) rather than as a local rank stuck behind it.
constexpr double kNetworkSlackS = 2.0;
// How long a broken link waits for the failed node's own abort message before reporting itself.
constexpr double kCauseGraceS = 0.3;

size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

}  // namespace

// ------------------------------------------------------------------------------------- WorkState
bool WorkState::wait(double timeout_s) {
  if (done()) return true;
  std::unique_lock<std::mutex> lk(mu_);
  if (timeout_s < 0) {
    cv_.wait(lk, [&] { return done(); });
    return true;
  }
  return cv_.wait_for(lk, std::chrono::duration<double>(timeout_s), [&] { return done(); });
}

void WorkState::finish(bool failed, ErrorKind kind, std::string msg) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    failed_ = failed;
    kind_ = kind;
    msg_ = std::move(msg);
    done_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------- Communicator
Communicator::Communicator(const Config& cfg) : cfg_(cfg) {
  if (cfg_.local_ranks.size() != static_cast<size_t>(cfg_.local_size))
    throw Error(ErrorKind::kUsage, "local_ranks must list local_size ranks");
  if (cfg_.chunk_bytes < 4096 || cfg_.chunk_bytes % 256 != 0)
    throw Error(ErrorKind::kUsage, "HFREDUCE_CHUNK_BYTES must be a multiple of 256 and at least 4096");
  if (cfg_.depth < 2) throw Error(ErrorKind::kUsage, "HFREDUCE_PIPELINE_DEPTH must be at least 2");
  shm_ = std::make_unique<NodeShm>(cfg_.shm_name, cfg_.local_rank == 0, cfg_.local_rank, cfg_.local_size,
                                   cfg_.local_ranks.data(), cfg_.chunk_bytes, cfg_.depth, cfg_.heap_bytes,
                                   cfg_.timeout_s);
  if (cfg_.num_nodes > 1) shm_->set_wait_slack_s(kNetworkSlackS);
  if (cfg_.num_nodes > 1 && cfg_.local_rank == 0) transport_ = make_tcp_transport(cfg_.node, cfg_.job_id);
  worker_ = std::thread([this] { worker_loop(); });
}

Communicator::~Communicator() { shutdown(); }

std::string Communicator::failure() const {
  try {
    shm_->check_abort();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void Communicator::connect(const std::vector<Endpoint>& leaders) {
  if (!transport_) return;
  transport_->connect(leaders, links_for(cfg_.algo, cfg_.num_nodes, cfg_.node), Deadline::after_s(cfg_.timeout_s));
  transport_->set_check([this] { shm_->check_abort(); });
  if (cfg_.algo == InterAlgo::kDoubleTree) {
    used_channels_ = {kChanTree0, kChanTree1};
    for (int ch : used_channels_) {
      net_threads_.emplace_back([this, ch] { net_thread(ch, true); });
      net_threads_.emplace_back([this, ch] { net_thread(ch, false); });
    }
  } else {
    used_channels_ = {kChanRing};
    net_threads_.emplace_back([this] { net_thread(kChanRing, true); });
  }
  std::vector<int> neighbours;
  const TreeLinks tl = dtree(cfg_.num_nodes, cfg_.node, 0);
  if (tl.parent >= 0) neighbours.push_back(tl.parent);
  for (int k : tl.kids)
    if (k >= 0) neighbours.push_back(k);
  control_ = std::make_unique<ControlPlane>(*transport_, *shm_, std::move(neighbours));
  control_->start();
}

std::shared_ptr<WorkState> Communicator::submit(CollKind kind, ReduceOp op, int root, DType dtype, void* ptr,
                                                size_t count, const std::string& part_of,
                                                const std::string& elem_dtype, int part_root) {
  if (part_of.size() >= sizeof(OpDesc::part_of) || elem_dtype.size() >= sizeof(OpDesc::elem_dtype))
    throw Error(ErrorKind::kUsage, "hfreduce: composite collective or dtype name too long: " + part_of + "/" + elem_dtype);
  Op o;
  std::memcpy(o.desc.part_of, part_of.data(), part_of.size());
  std::memcpy(o.desc.elem_dtype, elem_dtype.data(), elem_dtype.size());
  o.desc.part_root = part_root;
  o.desc.kind = static_cast<int32_t>(kind);
  o.desc.op = static_cast<int32_t>(op);
  o.desc.root = root;
  o.desc.dtype = static_cast<int32_t>(dtype);
  o.desc.count = count;
  o.ptr = ptr;
  o.bytes = count * dtype_size(dtype);
  uint64_t off = 0;
  if (o.bytes && shm_->in_own_heap(ptr, o.bytes, &off)) {
    o.desc.resident = 1;
    o.desc.heap_offset = off;
  }
  o.work = std::make_shared<WorkState>();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) throw Error(ErrorKind::kUsage, "hfreduce: the communicator was finalized");
    queue_.push_back(o);
  }
  cv_.notify_all();
  return o.work;
}

void Communicator::worker_loop() {
  while (true) {
    Op op;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      op = queue_.front();
      queue_.pop_front();
    }
    const uint64_t s = ++seq_;
    const std::string call = describe(op.desc) + " (collective #" + std::to_string(s) + ")";
    const auto t0 = Clock::now();
    if (cfg_.debug) std::fprintf(stderr, "hfreduce[rank %d]: enter %s\n", cfg_.rank, call.c_str());
    bool failed = true;
    ErrorKind kind = ErrorKind::kAborted;
    std::string msg;
    try {
      shm_->check_abort();
      run_op(op, s);
      failed = false;
    } catch (const Error& e) {
      kind = e.kind();
      msg = e.what();
      if (kind != ErrorKind::kMismatch && kind != ErrorKind::kUsage) {
        // A lost or stuck peer: fail the whole node (the control plane tells the other nodes), so every
        // later call raises at once instead of computing on a broken pipeline. The node's first cause
        // is what every rank reports.
        fail_node(kind, msg);
        std::string cause = failure();
        if (!cause.empty()) {
          msg = cause;
          kind = static_cast<ErrorKind>(shm_->hdr()->abort_kind);
        }
        cause = msg.rfind("hfreduce: ", 0) == 0 ? msg.substr(10) : msg;
        msg = "hfreduce: rank " + std::to_string(cfg_.rank) + ": " + call + " failed: " + cause;
      }
    } catch (const std::exception& e) {
      msg = std::string("hfreduce: internal error: ") + e.what();
      shm_->abort(ErrorKind::kAborted, msg);
    }
    if (cfg_.debug) {
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      std::fprintf(stderr, "hfreduce[rank %d]: exit %s after %.3f ms: %s\n", cfg_.rank, call.c_str(), ms,
                   failed ? msg.c_str() : "ok");
    }
    if (failed) {
      op.work->finish(true, kind, msg);
    } else {
      op.work->finish(false, ErrorKind::kUsage, "");
    }
  }
}

void Communicator::run_op(Op& op, uint64_t s) {
  const int me = cfg_.local_rank;
  auto what = [&](const char* stage) { return [=] { return std::string(stage) + " of collective #" + std::to_string(s); }; };
  NodeShm& sh = *shm_;
  sh.wait_all(&RankSlot::completed_ops, s - 1, what("the start"));
  RankSlot& mine = sh.slot(me);
  mine.desc = op.desc;
  mine.posted_seq.store(s, std::memory_order_release);
  sh.wake();
  sh.wait_all(&RankSlot::posted_seq, s, what("the argument check"));

  // Agreement: every rank must make the same call before any data moves.
  Verdict v = agree_local(sh, s, cfg_.world_size, cfg_.rank);
  if (cfg_.num_nodes > 1) {
    if (me == 0) {
      v = agree_inter_node(*transport_, cfg_.num_nodes, cfg_.node, cfg_.rank, sh.slot(0).desc, v, s, cfg_.timeout_s);
      publish_verdict(sh, s, v);
    } else {
      v = await_verdict(sh, s, what("the cross-node argument check"));
    }
  }
  if (!v.ok) {
    mine.completed_ops.store(s, std::memory_order_release);
    sh.wake();
    throw Error(v.kind, v.msg);
  }
  data_phase(op, s);
  mine.completed_ops.store(s, std::memory_order_release);
  sh.wake();
  if (op.desc.op == static_cast<int32_t>(ReduceOp::kAvg) && op.bytes &&
      (op.desc.kind == 0 || (op.desc.kind == 2 && op.desc.root == cfg_.rank)))
    scale(static_cast<DType>(op.desc.dtype), op.ptr, op.desc.count, 1.0f / cfg_.world_size);
}

void Communicator::data_phase(Op& op, uint64_t s) {
  const OpDesc& desc = op.desc;
  const DType dt = static_cast<DType>(desc.dtype);
  const size_t esz = dtype_size(dt);
  const size_t count = desc.count;
  if (count == 0 || cfg_.world_size == 1) return;
  NodeShm& sh = *shm_;
  const int L = cfg_.local_size, me = cfg_.local_rank, M = cfg_.num_nodes;
  const size_t ce = cfg_.chunk_bytes / esz;
  const uint64_t n = (count + ce - 1) / ce;
  const int D = cfg_.depth;
  const CollKind kind = static_cast<CollKind>(desc.kind);
  // Who contributes input and who takes output.
  int root_local = -1;
  if (kind != CollKind::kAllreduce)
    for (int r = 0; r < L; ++r)
      if (sh.global_rank(r) == desc.root) root_local = r;
  bool resident[kMaxLocalRanks] = {};
  bool any_private = false, all_resident = true;
  for (int r = 0; r < L; ++r) {
    resident[r] = sh.slot(r).desc.resident != 0;
    any_private |= !resident[r];
    all_resident &= resident[r];
  }
  const bool single = (M == 1);
  const bool uses_slots = !(single && all_resident);
  const bool input_direct_me = resident[me] || L == 1;  // nobody else reads my input: no copy-in
  auto takes_output = [&](int r) { return kind != CollKind::kReduce || sh.global_rank(r) == desc.root; };
  const bool my_copy_out = takes_output(me) && !(single && resident[me]);
  const bool streaming = op.bytes >= cfg_.streaming_threshold_bytes;
  auto chunk_count = [&](uint64_t i) { return std::min(ce, count - i * ce); };
  auto in_ptr = [&](int r, uint64_t i) -> const char* {
    if (r == me && input_direct_me) return static_cast<const char*>(op.ptr) + i * ce * esz;
    if (resident[r]) return sh.heap(r) + sh.slot(r).desc.heap_offset + i * ce * esz;
    return sh.staging_slot(r, i);
  };
  auto what = [&](const char* stage, uint64_t i) {
    return [=] { return std::string(stage) + " of chunk " + std::to_string(i) + " of collective #" + std::to_string(s); };
  };
  if (M > 1 && me == 0) {
    {
      std::lock_guard<std::mutex> lk(net_mu_);
      net_ops_.push_back(NetOp{s, dt, count, n, ce});
    }
    net_cv_.notify_all();
  }
  RankSlot& mine = sh.slot(me);
  const std::vector<int> chans = cfg_.algo == InterAlgo::kDoubleTree ? std::vector<int>{kChanTree0, kChanTree1}
                                                                      : std::vector<int>{kChanRing};
  auto final_ready = [&](uint64_t j) -> int {
    const uint64_t want = progress(s, j);
    if (single) {
      for (int r = 0; r < L; ++r)
        if (sh.slot(r).reduced.load(std::memory_order_acquire) < want) return r;
      return -1;
    }
    for (int ch : chans)
      if (sh.hdr()->net_done[ch].load(std::memory_order_acquire) < want) return 0;  // the leader's network stage
    return -1;
  };
  char* user = static_cast<char*>(op.ptr);
  auto copy_out = [&](uint64_t j) {
    sh.wait([&] { return final_ready(j); }, what("the result", j));  // multi-node: the wait slack covers the network
    if (my_copy_out) copy_bytes(user + j * ce * esz, sh.result_slot(j), chunk_count(j) * esz, streaming);
    mine.done.store(progress(s, j), std::memory_order_release);
    sh.wake();
  };
  const bool contributes = kind != CollKind::kBroadcast || me == root_local;
  uint64_t next_out = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (uses_slots && i >= static_cast<uint64_t>(D)) {
      while (next_out <= i - D) copy_out(next_out++);
      sh.wait_all(&RankSlot::done, progress(s, i - D), what("the release of a pipeline slot", i));
    }
    const size_t c = chunk_count(i);
    if (!input_direct_me && contributes) copy_bytes(sh.staging_slot(me, i), user + i * ce * esz, c * esz, false);
    mine.arrived.store(progress(s, i), std::memory_order_release);
    sh.wake();
    sh.wait_all(&RankSlot::arrived, progress(s, i), what("the copy-in", i));
    // Each local rank reduces one slice of the chunk, so every core works.
    const size_t sl = round_up((c + L - 1) / L, kSliceAlignElems);
    const size_t a = std::min(c, static_cast<size_t>(me) * sl), b = std::min(c, a + sl);
    if (b > a) {
      const void* ins[kMaxLocalRanks];
      int k = 0;
      if (kind == CollKind::kBroadcast) {
        if (root_local >= 0) ins[k++] = in_ptr(root_local, i) + a * esz;
      } else {
        for (int r = 0; r < L; ++r) ins[k++] = in_ptr(r, i) + a * esz;
      }
      void* outs[kMaxLocalRanks + 1];
      int no = 0;
      if (single) {
        for (int r = 0; r < L; ++r)
          if (resident[r] && takes_output(r)) outs[no++] = sh.heap(r) + sh.slot(r).desc.heap_offset + (i * ce + a) * esz;
        if (any_private) outs[no++] = sh.result_slot(i) + a * esz;
      } else {
        outs[no++] = sh.result_slot(i) + a * esz;
      }
      if (k == 0) {
        for (int o = 0; o < no; ++o) std::memset(outs[o], 0, (b - a) * esz);
      } else {
        reduce_sum_multi(dt, outs, no, ins, k, b - a, streaming && single);
      }
    }
    mine.reduced.store(progress(s, i), std::memory_order_release);
    sh.wake();
    while (next_out <= i && final_ready(next_out) == -1) copy_out(next_out++);
  }
  while (next_out < n) copy_out(next_out++);
}

bool Communicator::next_net_op(size_t* index, NetOp* out) {
  std::unique_lock<std::mutex> lk(net_mu_);
  net_cv_.wait(lk, [&] { return net_stop_ || net_ops_.size() > *index; });
  if (net_ops_.size() <= *index) return false;
  *out = net_ops_[(*index)++];
  return true;
}

void Communicator::net_thread(int channel, bool up) {
  NodeShm& sh = *shm_;
  const int M = cfg_.num_nodes;
  const TreeLinks tl = channel <= kChanTree1 ? dtree(M, cfg_.node, channel) : TreeLinks{};
  std::vector<char> tmp(cfg_.chunk_bytes + 64);
  char* tmp_p = tmp.data();
  size_t idx = 0;
  NetOp op;
  while (next_net_op(&idx, &op)) {
    try {
      const size_t esz = dtype_size(op.dtype);
      for (uint64_t i = 0; i < op.nchunks; ++i) {
        const uint64_t want = progress(op.seq, i);
        const size_t c = std::min(op.chunk_elems, op.count - i * op.chunk_elems);
        char* slot = sh.result_slot(i);
        auto what = [&] { return "the inter-node stage of chunk " + std::to_string(i) + " of collective #" + std::to_string(op.seq); };
        if (channel == kChanRing || up) {
          sh.wait_all(&RankSlot::reduced, want, what);
        } else {
          sh.wait([&] { return sh.hdr()->net_up[channel].load(std::memory_order_acquire) >= want ? -1 : 0; }, what,
                  2.0 * cfg_.timeout_s);
        }
        if (channel == kChanRing) {
          ring_allreduce(*transport_, M, cfg_.node, op.dtype, slot, c, tmp_p, cfg_.timeout_s);
          sh.hdr()->net_done[channel].store(want, std::memory_order_release);
        } else {
          auto [b, e] = tree_half(c, channel);
          if (up) {
            tree_up(*transport_, tl, channel, op.dtype, slot + b * esz, e - b, tmp_p, cfg_.timeout_s);
            sh.hdr()->net_up[channel].store(want, std::memory_order_release);
          } else {
            tree_down(*transport_, tl, channel, slot + b * esz, (e - b) * esz, cfg_.timeout_s);
            sh.hdr()->net_done[channel].store(want, std::memory_order_release);
          }
        }
        sh.wake();
      }
    } catch (const Error& e) {
      fail_node(e.kind(), e.what());
      return;
    } catch (const std::exception& e) {
      sh.abort(ErrorKind::kAborted, std::string("hfreduce: internal error in the network stage: ") + e.what());
      return;
    }
  }
}

void Communicator::fail_node(ErrorKind kind, const std::string& msg) {
  if (kind == ErrorKind::kPeerLost && cfg_.num_nodes > 1) {
    // A link broke: usually a node that failed first and whose abort message (naming the rank that was
    // lost) is on its way over the control link. Give the control plane a moment to deliver it.
    const Deadline dl = Deadline::after_s(kCauseGraceS);
    while (!shm_->aborted() && !dl.expired()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  shm_->abort(kind, msg);
}

void Communicator::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ && !worker_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  {
    std::lock_guard<std::mutex> lk(net_mu_);
    net_stop_ = true;
  }
  net_cv_.notify_all();
  for (auto& t : net_threads_)
    if (t.joinable()) t.join();
  net_threads_.clear();
  if (control_) control_->stop();
  if (transport_) transport_->shutdown();
}

}  // namespace hfreduce
