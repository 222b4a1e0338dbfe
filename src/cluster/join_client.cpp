#include "join_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>

#include "server_context.h"
#include "ticketd/auth/digest.h"
#include "ticketd/io/loop.h"
#include "ticketd/resp/writer.h"
#include "ticketd/tls/session.h"

namespace ticketd::cluster {

auth::Digest join_proof(const auth::Digest& key, std::string_view id, std::string_view raft_addr,
                        std::string_view service_addr, std::string_view incarnation) {
  std::string t = "TKDP-JOIN-1";
  for (std::string_view part : {id, raft_addr, service_addr, incarnation}) {
    t += ' ';
    t += std::to_string(part.size());  // length-prefixed: no two argument lists collide
    t += ':';
    t.append(part);
  }
  return auth::hmac_sha256(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()), t);
}

JoinClient::JoinClient(std::string target, std::string command, std::string user,
                       std::string password, std::function<void(std::string_view)> log,
                       tls::Contexts* tls)
    : target_(std::move(target)), command_(std::move(command)), log_(std::move(log)), tls_(tls) {
  if (!password.empty()) {
    resp::append_array_header(login_, 3);
    resp::append_bulk(login_, "AUTH");
    resp::append_bulk(login_, user);
    resp::append_bulk(login_, password);
    auth::wipe(password);
  }
}

JoinClient::~JoinClient() {
  stop();
  auth::wipe(login_);
}

bool JoinClient::attempt(const std::string& addr, std::string* reply) {
  std::string host;
  uint16_t port = 0;
  if (!io::parse_host_port(addr, &host, &port)) {
    *reply = "-ERR bad address " + addr;
    return false;
  }
  if (host.empty()) host = "127.0.0.1";
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0) {
    ::close(fd);
    *reply = "cannot connect to " + addr;
    return false;
  }
  // Plain: the socket itself. TLS: a session over it (blocking: this is the join's own thread).
  std::unique_ptr<tls::Session> session;
  auto send_all = [fd](const std::string& bytes) {
    return bytes.empty() ||
           ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  };
  auto flush_tls = [&] {
    std::string ct;
    session->take_ciphertext(&ct);
    return send_all(ct);
  };
  auto recv_some = [&](char* buf, size_t cap) -> ssize_t {
    if (!session) return ::recv(fd, buf, cap, 0);
    while (true) {
      long m = session->read(buf, cap);
      if (m != 0 || session->peer_closed()) return m;
      ssize_t n = ::recv(fd, buf, cap, 0);
      if (n <= 0 || !session->feed(buf, static_cast<size_t>(n)) || !flush_tls()) return -1;
    }
  };
  if (tls_ != nullptr) {
    auto set = tls_->current();
    session = std::make_unique<tls::Session>(set->connector(), tls::Role::kConnect,
                                             tls::PeerVerify::kRequired);
    session->start();
    char tmp[4096];
    bool up = flush_tls();
    while (up && !session->handshake_done() && !session->failed()) {
      ssize_t n = ::recv(fd, tmp, sizeof(tmp), 0);
      up = n > 0 && session->feed(tmp, static_cast<size_t>(n)) && flush_tls();
    }
    if (!session->handshake_done() || session->failed()) {
      ::close(fd);
      *reply = "TLS handshake with " + addr + " failed: " +
               (session->failed() ? session->error() : std::string("connection closed"));
      return false;
    }
  }
  std::string req = login_ + command_ + "\r\n";
  bool ok;
  if (session) {
    ok = session->write(req) && flush_tls();
  } else {
    ok = send_all(req);
  }
  auth::wipe(req);
  // One reply line per request: the login's (+OK), then the join's.
  size_t lines = login_.empty() ? 1 : 2;
  std::string buf;
  char tmp[512];
  auto complete = [&] {
    size_t first = buf.find("\r\n");
    return first != std::string::npos &&
           (lines == 1 || buf.rfind("+OK\r\n", 0) != 0 || buf.find("\r\n", first + 2) != std::string::npos);
  };
  while (ok && !complete() && buf.size() < 4096) {
    ssize_t n = recv_some(tmp, sizeof(tmp));
    if (n <= 0) {
      ok = false;
      break;
    }
    buf.append(tmp, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!ok) {
    *reply = "no reply from " + addr;
    return false;
  }
  if (lines == 2) {
    if (buf.rfind("+OK\r\n", 0) != 0) {
      *reply = "login as the join user refused: " + buf.substr(0, buf.find("\r\n"));
      return true;
    }
    buf.erase(0, 5);
  }
  *reply = buf.substr(0, buf.find("\r\n"));
  return true;
}

void JoinClient::run() {
  std::string target = target_;
  int backoff_ms = 100;
  int hops = 0;
  while (!stop_.load()) {
    std::string reply;
    bool got = attempt(target, &reply);
    if (got && reply.rfind("+OK", 0) == 0) {
      uint64_t cid = reply.size() > 4 ? parse_hex(std::string_view(reply).substr(4)) : 0;
      cluster_id_.store(cid == 0 ? 1 : cid);
      log_("accepted by " + target + " (" + reply + ")");
      return;
    }
    if (got && reply.rfind("-MOVED ", 0) == 0 && hops < 8) {
      size_t sp = reply.rfind(' ');
      target = reply.substr(sp + 1);
      ++hops;
      continue;
    }
    log_("not yet: " + (reply.empty() ? std::string("no answer") : reply) + " (retrying)");
    hops = 0;
    target = target_;
    for (int waited = 0; waited < backoff_ms && !stop_.load(); waited += 20)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    backoff_ms = std::min(backoff_ms * 2, 2000);
  }
}


}  // namespace ticketd::cluster
