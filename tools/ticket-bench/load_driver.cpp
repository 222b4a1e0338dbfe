#include "load_driver.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>

namespace ticketd::bench {
namespace {

constexpr int64_t kNsPerSec = 1'000'000'000;
constexpr int64_t kMaxWaitNs = 100'000'000;     // re-check stop/deadlines at least 10x/s
constexpr size_t kInitialBuffer = 16 * 1024;
constexpr size_t kMaxBuffer = 64 * 1024 * 1024;
constexpr int kMaxRedirectsInARow = 16;
constexpr int kRedirectConnectTimeoutMs = 2000;

resp::ReplyLimits ReaderLimits() {
  resp::ReplyLimits limits;
  limits.max_bulk = kMaxBuffer / 2;
  return limits;
}

}  // namespace

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

namespace {
// Sends `login` (AUTH) on the fresh non-blocking `fd` and waits for exactly "+OK\r\n".
bool LogIn(int fd, const std::string& login, int timeout_ms, const std::string& where,
           std::string& error) {
  int64_t deadline = NowNs() + static_cast<int64_t>(timeout_ms) * 1'000'000;
  size_t sent = 0;
  std::string reply;
  while (reply.find("\r\n") == std::string::npos && reply.size() < 512) {
    int left_ms = static_cast<int>((deadline - NowNs()) / 1'000'000);
    if (left_ms <= 0) {
      error = "AUTH on " + where + ": no answer";
      return false;
    }
    pollfd p{fd, static_cast<short>(sent < login.size() ? POLLOUT : POLLIN), 0};
    if (poll(&p, 1, left_ms) <= 0) continue;
    if (sent < login.size()) {
      ssize_t n = send(fd, login.data() + sent, login.size() - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN) break;
      continue;
    }
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN)) break;
    if (n > 0) reply.append(buf, static_cast<size_t>(n));
  }
  if (reply == "+OK\r\n") return true;
  error = "AUTH on " + where + " refused: " + reply.substr(0, reply.find("\r\n"));
  return false;
}
}  // namespace

int ConnectTcp(const ConnectTarget& target, int timeout_ms, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  std::string port = std::to_string(target.port);
  int rc = getaddrinfo(target.host.c_str(), port.c_str(), &hints, &list);
  std::string where = target.host + ":" + port;
  if (rc != 0) {
    error = "cannot resolve " + where + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  error = "cannot connect to " + where;
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      error = "socket: " + std::string(strerror(errno));
      continue;
    }
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        int n = poll(&p, 1, timeout_ms);
        if (n == 1) {
          socklen_t len = sizeof(err);
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        } else {
          err = n == 0 ? ETIMEDOUT : errno;
        }
      }
    }
    if (err == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      freeaddrinfo(list);
      if (!target.login.empty() && !LogIn(fd, target.login, timeout_ms, where, error)) {
        close(fd);
        return -1;
      }
      return fd;
    }
    error = "cannot connect to " + where + ": " + strerror(err);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(list);
  return -1;
}

struct LoadDriver::Connection {
  int fd = -1;
  size_t index = 0;              // position in this driver (open-loop schedule offset)
  std::vector<char> in;          // receive buffer; replies are parsed in place
  size_t in_start = 0;
  size_t in_end = 0;
  std::vector<int64_t> sent;     // ring of send times (intended times in open loop)
  size_t head = 0;
  size_t outstanding = 0;
  uint64_t unwritten = 0;        // bytes of queued requests not yet written
  bool want_write = false;
  bool dead = false;
  bool has_last = false;
  int64_t last_ticket = 0;
  uint64_t next_seq = 0;         // open loop: sequence number of the next scheduled send
  int redirects_in_a_row = 0;
};

LoadDriver::LoadDriver(const BenchPlan& plan, const std::vector<int>& fds,
                       const ConnectTarget& target, const std::atomic<bool>& stop)
    : plan_(plan), target_(target), stop_(stop), reader_(ReaderLimits()) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i <= plan_.pipeline; ++i) out_pattern_ += plan_.request;
  budget_left_ = plan_.budget;
  for (size_t i = 0; i < fds.size(); ++i) {
    auto* c = new Connection();
    c->fd = fds[i];
    c->index = i;
    c->in.resize(kInitialBuffer);
    c->sent.resize(static_cast<size_t>(plan_.pipeline));
    conns_.push_back(c);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
      Fail(*c, std::string("epoll_ctl: ") + strerror(errno));
    }
  }
  if (plan_.check) {
    // The checker keeps every value for the final uniqueness pass; reserving up front keeps
    // the reply path free of reallocations in count mode.
    result_.tickets.reserve(plan_.budget == UINT64_MAX ? (1u << 20)
                                                       : static_cast<size_t>(plan_.budget) + 1024);
  }
}

LoadDriver::~LoadDriver() {
  for (Connection* c : conns_) {
    if (c->fd >= 0) close(c->fd);
    delete c;
  }
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

void LoadDriver::SetWriteInterest(Connection& c, bool want) {
  if (c.want_write == want || c.dead) return;
  c.want_write = want;
  epoll_event ev{};
  ev.events = want ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
  ev.data.ptr = &c;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void LoadDriver::Fail(Connection& c, const std::string& why) {
  if (c.dead) return;
  c.dead = true;
  result_.connection_failures++;
  if (result_.first_failure.empty()) result_.first_failure = why;
  result_.unanswered += c.outstanding;
  c.outstanding = 0;
  c.unwritten = 0;
  if (c.fd >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
  }
}

void LoadDriver::QueueRequests(Connection& c, int64_t now) {
  if (c.dead) return;
  const size_t depth = static_cast<size_t>(plan_.pipeline);
  const double ns_per_request =
      plan_.rate_per_thread > 0 ? kNsPerSec / plan_.rate_per_thread : 0.0;
  while (c.outstanding < depth && now < plan_.send_end_ns) {
    int64_t at = now;
    if (ns_per_request > 0) {
      // Requests of this thread are dealt round-robin to its connections; the latency
      // clock starts at the intended time, so a late send is charged to the server's
      // account, not hidden (no coordinated omission).
      double seq = static_cast<double>(c.next_seq * conns_.size() + c.index);
      at = plan_.start_ns + static_cast<int64_t>(seq * ns_per_request);
      if (at > now || at >= plan_.send_end_ns) break;
    }
    if (at >= plan_.measure_start_ns) {
      if (budget_left_ == 0) break;
      --budget_left_;
    }
    c.sent[(c.head + c.outstanding) % depth] = at;
    c.outstanding++;
    c.unwritten += plan_.request.size();
    c.next_seq++;
  }
}

bool LoadDriver::Flush(Connection& c) {
  const size_t len = plan_.request.size();
  while (c.unwritten > 0 && !c.dead) {
    // Every request has the same bytes, so the unwritten bytes are always a suffix of the
    // repeated pattern: start where the partially written request left off.
    size_t off = (len - c.unwritten % len) % len;
    size_t avail = std::min<uint64_t>(c.unwritten, out_pattern_.size() - off);
    ssize_t n = send(c.fd, out_pattern_.data() + off, avail, MSG_NOSIGNAL);
    if (n > 0) {
      c.unwritten -= static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      SetWriteInterest(c, true);
      return true;
    }
    Fail(c, std::string("send: ") + strerror(errno));
    return false;
  }
  SetWriteInterest(c, false);
  return !c.dead;
}

void LoadDriver::Redirect(Connection& c, std::string_view moved_text) {
  // "MOVED <slot> <host>:<port>"
  std::string_view rest = moved_text.substr(6);
  size_t space = rest.find(' ');
  std::string_view addr = space == std::string_view::npos ? "" : rest.substr(space + 1);
  size_t colon = addr.rfind(':');
  int64_t port = 0;
  if (colon == std::string_view::npos || colon == 0 ||
      !resp::ParseReplyInteger(addr.substr(colon + 1), port) || port <= 0 || port > 65535) {
    Fail(c, "unparseable redirect: -" + std::string(moved_text));
    return;
  }
  if (++c.redirects_in_a_row > kMaxRedirectsInARow) {
    Fail(c, "more than 16 redirects in a row, last: -" + std::string(moved_text));
    return;
  }
  result_.moved++;
  ConnectTarget to{std::string(addr.substr(0, colon)), static_cast<uint16_t>(port), target_.login};
  if (to.host.size() > 2 && to.host.front() == '[' && to.host.back() == ']') {
    to.host = to.host.substr(1, to.host.size() - 2);
  }
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  close(c.fd);
  c.fd = -1;
  std::string error;
  int fd = ConnectTcp(to, kRedirectConnectTimeoutMs, error);
  if (fd < 0) {
    Fail(c, "following -" + std::string(moved_text) + ": " + error);
    return;
  }
  c.fd = fd;
  c.want_write = false;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &c;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev);
  // Whatever the old server still had to say is dropped; every unanswered request is
  // sent again, keeping its original send time (the redirect is part of its latency).
  c.in_start = c.in_end = 0;
  c.unwritten = c.outstanding * plan_.request.size();
  Flush(c);
}

bool LoadDriver::HandleReply(Connection& c, const resp::Reply& reply, int64_t now) {
  if (c.outstanding == 0) {
    Fail(c, "reply without a request: the server sent more replies than requests");
    return false;
  }
  if (reply.type == resp::ReplyType::kError && reply.text.starts_with("MOVED ")) {
    Redirect(c, reply.text);
    return false;
  }
  const size_t depth = static_cast<size_t>(plan_.pipeline);
  const int64_t sent_at = c.sent[c.head];
  c.head = (c.head + 1) % depth;
  c.outstanding--;
  c.redirects_in_a_row = 0;
  result_.replies++;
  if (sent_at >= plan_.measure_start_ns) {
    result_.latency.Record(static_cast<uint64_t>(std::max<int64_t>(0, now - sent_at)));
    result_.measured++;
    result_.last_reply_ns = now;
  }
  if (reply.type == resp::ReplyType::kError) {
    result_.error_replies++;
    if (result_.first_error.empty()) result_.first_error = "-" + std::string(reply.text);
    return true;
  }
  if (!plan_.check) return true;
  int64_t value = 0;
  bool numeric = false;
  if (reply.type == resp::ReplyType::kInteger) {
    value = reply.integer;
    numeric = true;
  } else if (reply.type == resp::ReplyType::kSimpleString ||
             reply.type == resp::ReplyType::kBulkString) {
    numeric = resp::ParseReplyInteger(reply.text, value);
  }
  if (!numeric) {
    result_.violations++;
    if (result_.first_violation.empty()) {
      result_.first_violation = "reply is not a ticket number: " + std::string(reply.text);
    }
    return true;
  }
  if (c.has_last && value <= c.last_ticket) {
    result_.violations++;
    if (result_.first_violation.empty()) {
      result_.first_violation = "ticket " + std::to_string(value) + " after " +
                                std::to_string(c.last_ticket) + " on one connection";
    }
  }
  c.has_last = true;
  c.last_ticket = std::max(c.last_ticket, value);
  result_.tickets.push_back(value);
  return true;
}

void LoadDriver::OnReadable(Connection& c, int64_t now) {
  if (c.in_end == c.in.size()) {
    if (c.in_start > 0) {
      std::memmove(c.in.data(), c.in.data() + c.in_start, c.in_end - c.in_start);
      c.in_end -= c.in_start;
      c.in_start = 0;
    } else if (c.in.size() < kMaxBuffer) {
      c.in.resize(c.in.size() * 2);  // rare: a reply larger than the buffer
    } else {
      Fail(c, "reply larger than the receive buffer limit");
      return;
    }
  }
  ssize_t n;
  do {
    n = recv(c.fd, c.in.data() + c.in_end, c.in.size() - c.in_end, 0);
  } while (n < 0 && errno == EINTR);
  if (n == 0) {
    Fail(c, "the server closed the connection");
    return;
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) Fail(c, std::string("recv: ") + strerror(errno));
    return;
  }
  c.in_end += static_cast<size_t>(n);
  now = NowNs();  // after the bytes arrived: the latency ends here
  if (plan_.http ? !ParseHttpReplies(c, now) : !ParseReplies(c, now)) return;
  if (c.dead) return;
  if (c.in_start == c.in_end) c.in_start = c.in_end = 0;
  progress_.store(result_.replies, std::memory_order_relaxed);
  QueueRequests(c, now);
  Flush(c);
}

bool LoadDriver::ParseReplies(Connection& c, int64_t now) {
  while (c.in_start < c.in_end) {
    resp::ReplyResult r = reader_.Parse(
        std::string_view(c.in.data() + c.in_start, c.in_end - c.in_start));
    if (r.status == resp::ReplyStatus::kOk) {
      if (!HandleReply(c, r.reply, now)) break;  // redirected or failed: buffer is reset
      c.in_start += r.consumed;
      continue;
    }
    if (r.status == resp::ReplyStatus::kError) {
      Fail(c, "protocol error in reply: " + std::string(r.error));
      return false;
    }
    if (r.needed > c.in.size() - c.in_start) {
      if (r.needed > kMaxBuffer) {
        Fail(c, "reply larger than the receive buffer limit");
        return false;
      }
      std::memmove(c.in.data(), c.in.data() + c.in_start, c.in_end - c.in_start);
      c.in_end -= c.in_start;
      c.in_start = 0;
      if (r.needed > c.in.size()) c.in.resize(std::max(r.needed, c.in.size() * 2));
    }
    break;
  }
  return true;
}

namespace {
bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool ParseSize(std::string_view s, int base, size_t& out) {
  if (s.empty() || s.size() > 15) return false;
  size_t v = 0;
  for (char ch : s) {
    int d;
    if (ch >= '0' && ch <= '9') {
      d = ch - '0';
    } else if (base == 16 && ch >= 'a' && ch <= 'f') {
      d = ch - 'a' + 10;
    } else if (base == 16 && ch >= 'A' && ch <= 'F') {
      d = ch - 'A' + 10;
    } else {
      return false;
    }
    v = v * static_cast<size_t>(base) + static_cast<size_t>(d);
  }
  out = v;
  return true;
}

constexpr size_t kMaxHttpHeader = 64 * 1024;
}  // namespace

HttpResponse ParseHttpResponse(std::string_view in, std::string& storage) {
  HttpResponse r;
  size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (in.size() > kMaxHttpHeader) {
      r.status = resp::ReplyStatus::kError;
      r.error = "HTTP response header longer than 64 KiB";
    }
    r.needed = in.size() + 1;
    return r;
  }
  std::string_view head = in.substr(0, head_end);
  size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.1 200 OK"
  size_t sp = status_line.find(' ');
  size_t code = 0;
  if (!status_line.starts_with("HTTP/1.") || sp == std::string_view::npos ||
      !ParseSize(status_line.substr(sp + 1, 3), 10, code) || code < 100 || code > 999) {
    r.status = resp::ReplyStatus::kError;
    r.error = "not an HTTP/1.x status line: " + std::string(status_line.substr(0, 80));
    return r;
  }
  r.code = static_cast<int>(code);
  bool chunked = false;
  bool has_length = false;
  size_t length = 0;
  size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == std::string_view::npos) e = head.size();
    std::string_view line = head.substr(pos, e - pos);
    pos = e + 2;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = Trim(line.substr(0, colon));
    std::string_view value = Trim(line.substr(colon + 1));
    if (IEquals(name, "content-length")) {
      if (!ParseSize(value, 10, length)) {
        r.status = resp::ReplyStatus::kError;
        r.error = "bad Content-Length: " + std::string(value.substr(0, 40));
        return r;
      }
      has_length = true;
    } else if (IEquals(name, "transfer-encoding")) {
      chunked = value.find("chunked") != std::string_view::npos;
    }
  }
  const size_t body_start = head_end + 4;
  if (!chunked) {
    if (!has_length) {
      // 1xx, 204 and 304 have no body; anything else here would be delimited by closing
      // the connection, which a keep-alive benchmark cannot use.
      if (code < 200 || code == 204 || code == 304) length = 0;
      else {
        r.status = resp::ReplyStatus::kError;
        r.error = "HTTP response without Content-Length or chunked body (status " +
                  std::to_string(code) + ")";
        return r;
      }
    }
    if (in.size() < body_start + length) {
      r.needed = body_start + length;
      return r;
    }
    r.status = resp::ReplyStatus::kOk;
    r.body = in.substr(body_start, length);
    r.consumed = body_start + length;
    return r;
  }
  storage.clear();
  pos = body_start;
  while (true) {
    size_t e = in.find("\r\n", pos);
    if (e == std::string_view::npos) {
      r.needed = in.size() + 1;
      return r;
    }
    std::string_view size_line = in.substr(pos, e - pos);
    size_line = Trim(size_line.substr(0, size_line.find(';')));
    size_t size = 0;
    if (!ParseSize(size_line, 16, size)) {
      r.status = resp::ReplyStatus::kError;
      r.error = "bad chunk size: " + std::string(size_line.substr(0, 40));
      return r;
    }
    pos = e + 2;
    if (size == 0) {
      // Trailers (none expected) end with an empty line.
      size_t t = in.find("\r\n", pos);
      while (t != std::string_view::npos && t != pos) {
        pos = t + 2;
        t = in.find("\r\n", pos);
      }
      if (t == std::string_view::npos) {
        r.needed = in.size() + 1;
        return r;
      }
      r.status = resp::ReplyStatus::kOk;
      r.body = storage;
      r.consumed = t + 2;
      return r;
    }
    if (in.size() < pos + size + 2) {
      r.needed = pos + size + 2;
      return r;
    }
    storage.append(in.substr(pos, size));
    pos += size + 2;
  }
}

bool LoadDriver::ParseHttpReplies(Connection& c, int64_t now) {
  while (c.in_start < c.in_end) {
    HttpResponse h = ParseHttpResponse(
        std::string_view(c.in.data() + c.in_start, c.in_end - c.in_start), http_body_);
    if (h.status == resp::ReplyStatus::kError) {
      Fail(c, "protocol error in HTTP response: " + h.error);
      return false;
    }
    if (h.status == resp::ReplyStatus::kNeedMore) {
      if (h.needed > kMaxBuffer) {
        Fail(c, "reply larger than the receive buffer limit");
        return false;
      }
      if (h.needed > c.in.size() - c.in_start) {
        std::memmove(c.in.data(), c.in.data() + c.in_start, c.in_end - c.in_start);
        c.in_end -= c.in_start;
        c.in_start = 0;
        if (h.needed > c.in.size()) c.in.resize(std::max(h.needed, c.in.size() * 2));
      }
      break;
    }
    if (h.code >= 100 && h.code < 200) {  // an interim response: the real one follows
      c.in_start += h.consumed;
      continue;
    }
    resp::Reply reply;
    if (h.code != 200) {
      reply.type = resp::ReplyType::kError;
      http_text_ = "HTTP " + std::to_string(h.code) + ": " + std::string(h.body.substr(0, 200));
      while (!http_text_.empty() && std::isspace(static_cast<unsigned char>(http_text_.back()))) {
        http_text_.pop_back();
      }
      reply.text = http_text_;
    } else {
      // etcd: {"header":{...,"revision":"N",...}}: the first "revision" is the header's.
      constexpr std::string_view kKey = "\"revision\":\"";
      size_t at = h.body.find(kKey);
      int64_t rev = 0;
      std::string_view digits;
      if (at != std::string_view::npos) {
        digits = h.body.substr(at + kKey.size());
        digits = digits.substr(0, digits.find('"'));
      }
      if (!digits.empty() && resp::ParseReplyInteger(digits, rev)) {
        reply.type = resp::ReplyType::kInteger;
        reply.integer = rev;
      } else {
        reply.type = resp::ReplyType::kSimpleString;  // the checker reports it
        http_text_ = std::string(h.body.substr(0, 200));
        reply.text = http_text_;
      }
    }
    if (!HandleReply(c, reply, now)) return false;
    c.in_start += h.consumed;
  }
  return !c.dead;
}

bool LoadDriver::Finished(int64_t now) const {
  if (now >= plan_.drain_deadline_ns) return true;
  bool any_alive = false;
  for (const Connection* c : conns_) {
    if (c->dead) continue;
    any_alive = true;
    if (c->outstanding > 0) return false;
  }
  if (!any_alive) return true;
  return budget_left_ == 0 || now >= plan_.send_end_ns;
}

int64_t LoadDriver::NextDueNs() const {
  int64_t next = INT64_MAX;
  const double ns_per_request = kNsPerSec / plan_.rate_per_thread;
  for (const Connection* c : conns_) {
    if (c->dead || c->outstanding >= static_cast<size_t>(plan_.pipeline)) continue;
    double seq = static_cast<double>(c->next_seq * conns_.size() + c->index);
    next = std::min(next, plan_.start_ns + static_cast<int64_t>(seq * ns_per_request));
  }
  return next;
}

void LoadDriver::Run() {
  const bool open_loop = plan_.rate_per_thread > 0;
  int64_t now = NowNs();
  if (now < plan_.start_ns) {
    // All threads start together, and no first request is mistaken for a warm-up one.
    timespec ts{0, static_cast<long>(plan_.start_ns - now)};
    nanosleep(&ts, nullptr);
    now = NowNs();
  }
  for (Connection* c : conns_) {
    QueueRequests(*c, now);
    Flush(*c);
  }
  epoll_event events[256];
  bool use_pwait2 = true;
  while (!stop_.load(std::memory_order_relaxed)) {
    now = NowNs();
    if (Finished(now)) break;
    int64_t wake = now + kMaxWaitNs;
    if (open_loop) {
      for (Connection* c : conns_) {
        if (c->outstanding < static_cast<size_t>(plan_.pipeline)) {
          QueueRequests(*c, now);
          Flush(*c);
        }
      }
      if (budget_left_ > 0) wake = std::min(wake, NextDueNs());
    }
    if (plan_.send_end_ns > now) wake = std::min(wake, plan_.send_end_ns);
    wake = std::min(wake, plan_.drain_deadline_ns);
    int64_t wait = std::max<int64_t>(0, wake - now);
    timespec ts{static_cast<time_t>(wait / kNsPerSec), static_cast<long>(wait % kNsPerSec)};
    int n = use_pwait2 ? epoll_pwait2(epoll_fd_, events, 256, &ts, nullptr) : -1;
    if (n < 0 && errno == ENOSYS) {
      // Kernels before 5.11: millisecond waits, rounded up so deadlines are not spun on.
      use_pwait2 = false;
    }
    if (!use_pwait2) {
      n = epoll_wait(epoll_fd_, events, 256, static_cast<int>((wait + 999'999) / 1'000'000));
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail(*conns_.front(), std::string("epoll_wait: ") + strerror(errno));
      break;
    }
    now = NowNs();
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Connection*>(events[i].data.ptr);
      if (c->dead) continue;
      if (events[i].events & EPOLLOUT) Flush(*c);
      if (!c->dead && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) OnReadable(*c, now);
    }
  }
  for (Connection* c : conns_) {
    if (!c->dead) result_.unanswered += c->outstanding;
  }
  progress_.store(result_.replies, std::memory_order_relaxed);
}

}  // namespace ticketd::bench
