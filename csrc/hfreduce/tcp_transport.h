// Transport over TCP sockets: one connection per (peer node, channel), made once at start-up.
// Included by tcp_transport.cc alone: the rest of the core makes one through make_tcp_transport().
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "hfreduce/transport.h"

namespace hfreduce {

class TcpTransport : public Transport {
 public:
  // Listens on an ephemeral port of all interfaces; port() tells it to the peers.
  TcpTransport(int node, uint64_t job_id);
  ~TcpTransport() override;
  int port() const override { return port_; }
  // The lower node id connects, the higher accepts.
  void connect(const std::vector<Endpoint>& nodes, const std::vector<std::pair<int, int>>& links,
               Deadline dl) override;

  void send(int peer, int channel, const void* buf, size_t bytes, Deadline dl) override;
  void recv(int peer, int channel, void* buf, size_t bytes, Deadline dl) override;
  void sendrecv(int send_peer, const void* sbuf, size_t sbytes, int recv_peer, void* rbuf, size_t rbytes, int channel,
                Deadline dl) override;
  void set_check(std::function<void()> check) override { check_ = std::move(check); }
  bool try_send(int peer, int channel, const void* buf, size_t bytes, int timeout_ms) override;
  bool try_recv(int peer, int channel, void* buf, size_t bytes, int timeout_ms) override;
  std::vector<int> readable(const std::vector<int>& peers, int channel, int timeout_ms) override;
  std::string peer_name(int peer) const override;
  void shutdown() override;

 private:
  // The descriptor of a link, -1 if absent.
  int fd(int peer, int channel) const;
  int fd_or_throw(int peer, int channel) const;
  [[noreturn]] void fail_io(int peer, const char* what, int err) const;
  int node_;
  uint64_t job_id_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<Endpoint> nodes_;
  std::map<std::pair<int, int>, int> fds_;
  std::function<void()> check_;
};

}  // namespace hfreduce
