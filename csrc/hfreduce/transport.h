// Point-to-point byte transport between node leaders. The inter-node algorithms only see this
// interface (an RDMA transport could implement it); tcp_transport.cc is the only file that knows
// sockets. Peers are node ids; a (peer, channel) pair is one ordered, reliable byte stream, so
// different channels never interleave. A channel's sends and receives may run on two different
// threads (full duplex), but two threads must not both send (or both receive) on one channel.
// Every blocking call has a deadline and calls `check` periodically (it throws to abort).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
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
  virtual void send(int peer, int channel, const void* buf, size_t bytes, Deadline dl) = 0;
  virtual void recv(int peer, int channel, void* buf, size_t bytes, Deadline dl) = 0;
  // Sends to one peer while receiving from another (ring steps), without deadlock.
  virtual void sendrecv(int send_peer, const void* sbuf, size_t sbytes, int recv_peer, void* rbuf, size_t rbytes,
                        int channel, Deadline dl) = 0;
  // `check` is called every few milliseconds while blocked; it throws to abort the call.
  virtual void set_check(std::function<void()> check) = 0;
  // Closes every connection (peers then see EOF).
  virtual void shutdown() = 0;
};

}  // namespace hfreduce
