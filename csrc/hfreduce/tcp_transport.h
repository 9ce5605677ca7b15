// Transport over TCP sockets: one connection per (peer node, channel), made once at start-up.
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
  int port() const { return port_; }
  // Makes the connections listed in `links` ((peer, channel); both ends list the link):
  // the lower node id connects, the higher accepts.
  void connect(const std::vector<Endpoint>& nodes, const std::vector<std::pair<int, int>>& links, Deadline dl);

  void send(int peer, int channel, const void* buf, size_t bytes, Deadline dl) override;
  void recv(int peer, int channel, void* buf, size_t bytes, Deadline dl) override;
  void sendrecv(int send_peer, const void* sbuf, size_t sbytes, int recv_peer, void* rbuf, size_t rbytes, int channel,
                Deadline dl) override;
  void set_check(std::function<void()> check) override { check_ = std::move(check); }
  void shutdown() override;
  // The raw descriptor of a link (for the control thread's poll), -1 if absent.
  int fd(int peer, int channel) const;
  std::string peer_name(int peer) const;

 private:
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
