// Point-to-point byte transport between node leaders. Everything above it (the inter-node
// algorithms, the cross-node agreement, the control plane) sees only this interface (an RDMA
// transport could implement it); tcp_transport.cc is the only file that knows sockets. Peers are
// node ids; a (peer, channel) pair is one ordered, reliable byte stream, so different channels never
// interleave. A channel's sends and receives may run on two different threads (full duplex), but two
// threads must not both send (or both receive) on one channel.
// Data calls (send/recv/sendrecv) have a deadline, call `check` periodically (it throws to abort) and
// throw Error (kTimeout, kPeerLost) naming the peer. Control calls (try_*, readable) never throw and
// never call `check`: the control plane uses them to report a failure, so they must not fail on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hfreduce/error.h"

namespace hfreduce {

struct Endpoint {
  std::string host;
  int port = 0;
  int rank = 0;  // global rank of the node's leader, for error messages
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Where peers reach this node (0 if it does not listen).
  virtual int port() const = 0;
  // Makes the links listed in `links` ((peer, channel); both ends list the link), by `dl`.
  virtual void connect(const std::vector<Endpoint>& nodes, const std::vector<std::pair<int, int>>& links,
                       Deadline dl) = 0;

  virtual void send(int peer, int channel, const void* buf, size_t bytes, Deadline dl) = 0;
  virtual void recv(int peer, int channel, void* buf, size_t bytes, Deadline dl) = 0;
  // Sends to one peer while receiving from another (ring steps), without deadlock.
  virtual void sendrecv(int send_peer, const void* sbuf, size_t sbytes, int recv_peer, void* rbuf, size_t rbytes,
                        int channel, Deadline dl) = 0;
  // `check` is called every few milliseconds while a data call is blocked; it throws to abort the call.
  virtual void set_check(std::function<void()> check) = 0;

  // Best effort: the whole buffer within timeout_ms, or false (link closed, broken or too slow).
  virtual bool try_send(int peer, int channel, const void* buf, size_t bytes, int timeout_ms) = 0;
  virtual bool try_recv(int peer, int channel, void* buf, size_t bytes, int timeout_ms) = 0;
  // Waits up to timeout_ms until some of `peers` have bytes to read on `channel` or closed the link
  // (a later try_recv then says which); returns those peers, possibly none.
  virtual std::vector<int> readable(const std::vector<int>& peers, int channel, int timeout_ms) = 0;

  // How errors name a peer: "node 2 (leader rank 4, host:port)".
  virtual std::string peer_name(int peer) const = 0;
  // Closes every connection (peers then see EOF).
  virtual void shutdown() = 0;
};

// The TCP implementation (tcp_transport.cc): listens on an ephemeral port of all interfaces; the
// lower node id of a link connects, the higher accepts; `job_id` rejects stray connections.
std::unique_ptr<Transport> make_tcp_transport(int node, uint64_t job_id);

}  // namespace hfreduce
