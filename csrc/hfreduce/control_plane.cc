#include "hfreduce/control_plane.h"

#include <algorithm>
#include <string>

#include "hfreduce/inter_node.h"

namespace hfreduce {

namespace {

enum : uint32_t { kFrameAbort = 1, kFrameGoodbye = 2 };

// One control message; an abort is followed by `len` bytes of its message.
struct CtlFrame {
  uint32_t type;
  int32_t kind;  // ErrorKind of an abort
  uint32_t len;
  uint32_t pad;
};

constexpr int kIoTimeoutMs = 1000;
constexpr int kPollMs = 20;
constexpr uint32_t kMaxMessage = 4096;

}  // namespace

ControlPlane::ControlPlane(Transport& tr, NodeShm& shm, std::vector<int> neighbours)
    : tr_(tr), shm_(shm), neighbours_(std::move(neighbours)) {}

void ControlPlane::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
}

void ControlPlane::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void ControlPlane::loop() {
  struct Peer {
    int node;
    bool bye = false, closed = false;
  };
  std::vector<Peer> peers;
  for (int n : neighbours_) peers.push_back({n});
  auto find = [&](int node) -> Peer& {
    return *std::find_if(peers.begin(), peers.end(), [&](const Peer& p) { return p.node == node; });
  };
  bool forwarded = false;
  while (true) {
    const bool stop = stop_.load();
    if (!forwarded && shm_.aborted()) {
      std::string msg;
      try {
        shm_.check_abort();
      } catch (const Error& e) {
        msg = e.what();
      }
      msg.resize(std::min<size_t>(msg.size(), kMaxMessage));
      CtlFrame f{kFrameAbort, static_cast<int32_t>(shm_.hdr()->abort_kind), static_cast<uint32_t>(msg.size()), 0};
      for (auto& p : peers) {
        if (p.closed || p.bye) continue;
        if (tr_.try_send(p.node, kChanControl, &f, sizeof(f), kIoTimeoutMs))
          tr_.try_send(p.node, kChanControl, msg.data(), msg.size(), kIoTimeoutMs);
      }
      forwarded = true;
    }
    if (stop) {
      CtlFrame f{kFrameGoodbye, 0, 0, 0};
      for (auto& p : peers)
        if (!p.closed) tr_.try_send(p.node, kChanControl, &f, sizeof(f), kIoTimeoutMs);
      return;
    }
    std::vector<int> open;
    for (auto& p : peers)
      if (!p.closed) open.push_back(p.node);
    for (int node : tr_.readable(open, kChanControl, kPollMs)) {
      Peer& p = find(node);
      CtlFrame f{};
      if (!tr_.try_recv(node, kChanControl, &f, sizeof(f), kIoTimeoutMs)) {
        p.closed = true;
        if (!p.bye && !stop_.load())
          shm_.abort(ErrorKind::kPeerLost,
                     "hfreduce: lost " + tr_.peer_name(node) + ": its process died or the network failed");
        continue;
      }
      if (f.type == kFrameGoodbye) {
        p.bye = true;
      } else if (f.type == kFrameAbort) {
        std::string msg(std::min(f.len, kMaxMessage), '\0');
        tr_.try_recv(node, kChanControl, msg.data(), msg.size(), kIoTimeoutMs);
        shm_.abort(static_cast<ErrorKind>(f.kind), msg);
      }
    }
  }
}

}  // namespace hfreduce
