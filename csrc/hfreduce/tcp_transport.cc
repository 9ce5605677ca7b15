#include "hfreduce/tcp_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace hfreduce {

namespace {

constexpr uint32_t kHelloMagic = 0x48465231;  // "HFR1"

struct Hello {
  uint32_t magic;
  int32_t node;
  int32_t channel;
  int32_t pad;
  uint64_t job_id;
};

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

void tune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Blocking exact write/read on a (non-blocking) fd with a deadline, used during set-up.
bool write_all_dl(int fd, const void* buf, size_t n, Deadline dl) {
  const char* p = static_cast<const char*>(buf);
  while (n) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) { p += w; n -= w; continue; }
    if (w < 0 && errno != EAGAIN && errno != EINTR) return false;
    if (dl.expired()) return false;
    pollfd pfd{fd, POLLOUT, 0};
    poll(&pfd, 1, 50);
  }
  return true;
}

bool read_all_dl(int fd, void* buf, size_t n, Deadline dl) {
  char* p = static_cast<char*>(buf);
  while (n) {
    ssize_t r = ::recv(fd, p, n, MSG_DONTWAIT);
    if (r > 0) { p += r; n -= r; continue; }
    if (r == 0) return false;
    if (errno != EAGAIN && errno != EINTR) return false;
    if (dl.expired()) return false;
    pollfd pfd{fd, POLLIN, 0};
    poll(&pfd, 1, 50);
  }
  return true;
}

}  // namespace

TcpTransport::TcpTransport(int node, uint64_t job_id) : node_(node), job_id_(job_id) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  if (listen_fd_ < 0) throw Error(ErrorKind::kUsage, std::string("socket(): ") + strerror(errno));
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = 0;
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(listen_fd_, 128) != 0)
    throw Error(ErrorKind::kUsage, std::string("bind/listen: ") + strerror(errno));
  socklen_t len = sizeof(a);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  set_nonblocking(listen_fd_);
}

TcpTransport::~TcpTransport() {
  shutdown();
  if (listen_fd_ >= 0) close(listen_fd_);
}

std::string TcpTransport::peer_name(int peer) const {
  if (peer >= 0 && peer < static_cast<int>(nodes_.size()))
    return "node " + std::to_string(peer) + " (leader rank " + std::to_string(nodes_[peer].rank) + ", " +
           nodes_[peer].host + ":" + std::to_string(nodes_[peer].port) + ")";
  return "node " + std::to_string(peer);
}

void TcpTransport::connect(const std::vector<Endpoint>& nodes, const std::vector<std::pair<int, int>>& links,
                           Deadline dl) {
  nodes_ = nodes;
  int expected_accepts = 0;
  for (const auto& [peer, channel] : links) {
    if (fds_.count({peer, channel})) continue;
    if (node_ > peer) {
      ++expected_accepts;
      fds_[{peer, channel}] = -1;
      continue;
    }
    const Endpoint& ep = nodes[peer];
    int fd = -1;
    while (true) {
      addrinfo hints{}, *res = nullptr;
      hints.ai_family = AF_INET;
      hints.ai_socktype = SOCK_STREAM;
      if (getaddrinfo(ep.host.c_str(), std::to_string(ep.port).c_str(), &hints, &res) == 0 && res) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
          freeaddrinfo(res);
          break;
        }
        close(fd);
        fd = -1;
        freeaddrinfo(res);
      }
      if (dl.expired()) throw Error(ErrorKind::kTimeout, "hfreduce: could not connect to " + peer_name(peer));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    tune(fd);
    set_nonblocking(fd);
    Hello h{kHelloMagic, node_, channel, 0, job_id_};
    if (!write_all_dl(fd, &h, sizeof(h), dl)) throw Error(ErrorKind::kPeerLost, "hfreduce: hello to " + peer_name(peer) + " failed");
    fds_[{peer, channel}] = fd;
  }
  while (expected_accepts > 0) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    poll(&pfd, 1, 50);
    int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) {
      if (dl.expired()) {
        std::string missing;
        for (auto& [k, v] : fds_)
          if (v < 0) missing += " " + peer_name(k.first) + "/channel " + std::to_string(k.second);
        throw Error(ErrorKind::kTimeout, "hfreduce: these peers never connected:" + missing);
      }
      continue;
    }
    tune(fd);
    set_nonblocking(fd);
    Hello h{};
    if (!read_all_dl(fd, &h, sizeof(h), Deadline::after_s(5)) || h.magic != kHelloMagic || h.job_id != job_id_) {
      close(fd);  // a stray connection (another job on this port?): ignore it
      continue;
    }
    auto it = fds_.find({h.node, h.channel});
    if (it == fds_.end() || it->second >= 0) {
      close(fd);
      continue;
    }
    it->second = fd;
    --expected_accepts;
  }
}

int TcpTransport::fd(int peer, int channel) const {
  auto it = fds_.find({peer, channel});
  return it == fds_.end() ? -1 : it->second;
}

int TcpTransport::fd_or_throw(int peer, int channel) const {
  int f = fd(peer, channel);
  if (f < 0)
    throw Error(ErrorKind::kUsage, "hfreduce: no connection to " + peer_name(peer) + " on channel " + std::to_string(channel));
  return f;
}

void TcpTransport::fail_io(int peer, const char* what, int err) const {
  std::string why = err == 0 ? "connection closed" : strerror(err);
  throw Error(ErrorKind::kPeerLost, "hfreduce: lost " + peer_name(peer) + " while " + what + " (" + why + ")");
}

void TcpTransport::send(int peer, int channel, const void* buf, size_t bytes, Deadline dl) {
  sendrecv(peer, buf, bytes, -1, nullptr, 0, channel, dl);
}

void TcpTransport::recv(int peer, int channel, void* buf, size_t bytes, Deadline dl) {
  sendrecv(-1, nullptr, 0, peer, buf, bytes, channel, dl);
}

void TcpTransport::sendrecv(int send_peer, const void* sbuf, size_t sbytes, int recv_peer, void* rbuf, size_t rbytes,
                            int channel, Deadline dl) {
  int sfd = sbytes ? fd_or_throw(send_peer, channel) : -1;
  int rfd = rbytes ? fd_or_throw(recv_peer, channel) : -1;
  const char* sp = static_cast<const char*>(sbuf);
  char* rp = static_cast<char*>(rbuf);
  auto last_check = Clock::now();
  while (sbytes || rbytes) {
    bool progressed = false;
    if (sbytes) {
      ssize_t w = ::send(sfd, sp, sbytes, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) { sp += w; sbytes -= w; progressed = true; }
      else if (w < 0 && errno != EAGAIN && errno != EINTR) fail_io(send_peer, "sending", errno);
    }
    if (rbytes) {
      ssize_t r = ::recv(rfd, rp, rbytes, MSG_DONTWAIT);
      if (r > 0) { rp += r; rbytes -= r; progressed = true; }
      else if (r == 0) fail_io(recv_peer, "receiving", 0);
      else if (errno != EAGAIN && errno != EINTR) fail_io(recv_peer, "receiving", errno);
    }
    if (progressed) {
      dl = Deadline{std::max(dl.at, Clock::now())};  // keep the caller's deadline; progress does not reset it
      continue;
    }
    auto now = Clock::now();
    if (check_ && now - last_check > std::chrono::milliseconds(5)) {
      last_check = now;
      check_();
    }
    if (dl.expired()) {
      int who = rbytes ? recv_peer : send_peer;
      throw Error(ErrorKind::kTimeout, "hfreduce: timed out " + std::string(rbytes ? "receiving from " : "sending to ") +
                                           peer_name(who) + " within the collective timeout; it is lost or stuck");
    }
    pollfd pfds[2];
    int n = 0;
    if (sbytes) pfds[n++] = pollfd{sfd, POLLOUT, 0};
    if (rbytes) pfds[n++] = pollfd{rfd, POLLIN, 0};
    poll(pfds, n, 10);
  }
}

bool TcpTransport::try_send(int peer, int channel, const void* buf, size_t bytes, int timeout_ms) {
  const int f = fd(peer, channel);
  return f >= 0 && write_all_dl(f, buf, bytes, Deadline::after_s(timeout_ms / 1000.0));
}

bool TcpTransport::try_recv(int peer, int channel, void* buf, size_t bytes, int timeout_ms) {
  const int f = fd(peer, channel);
  return f >= 0 && read_all_dl(f, buf, bytes, Deadline::after_s(timeout_ms / 1000.0));
}

std::vector<int> TcpTransport::readable(const std::vector<int>& peers, int channel, int timeout_ms) {
  std::vector<pollfd> pfds;
  std::vector<int> who, out;
  for (int p : peers) {
    const int f = fd(p, channel);
    if (f < 0) continue;
    pfds.push_back(pollfd{f, POLLIN, 0});
    who.push_back(p);
  }
  if (pfds.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
    return out;
  }
  if (poll(pfds.data(), pfds.size(), timeout_ms) <= 0) return out;
  for (size_t i = 0; i < pfds.size(); ++i)
    if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) out.push_back(who[i]);
  return out;
}

std::unique_ptr<Transport> make_tcp_transport(int node, uint64_t job_id) {
  return std::make_unique<TcpTransport>(node, job_id);
}

void TcpTransport::shutdown() {
  for (auto& [k, fd] : fds_) {
    if (fd >= 0) {
      ::shutdown(fd, SHUT_RDWR);
      close(fd);
      fd = -1;
    }
  }
}

}  // namespace hfreduce
