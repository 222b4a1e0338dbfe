#include "ticketd/io/loop.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "ticketd/base/check.h"

namespace ticketd::io {

Loop::Loop(const LoopOptions& opts) {
  int ret = -EINVAL;
  if (opts.try_defer_taskrun) {
    io_uring_params p{};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN;
    ret = io_uring_queue_init_params(opts.entries, &ring_, &p);
    if (ret == 0) setup_mode_ = "defer_taskrun";
    if (ret < 0) {
      io_uring_params q{};
      q.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
      ret = io_uring_queue_init_params(opts.entries, &ring_, &q);
      if (ret == 0) setup_mode_ = "single_issuer";
    }
  }
  if (ret < 0) {
    ret = io_uring_queue_init(opts.entries, &ring_, 0);
    if (ret == 0) setup_mode_ = "plain";
  }
  if (ret < 0) {
    throw std::runtime_error(std::string("io_uring_queue_init: ") + std::strerror(-ret));
  }
  event_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (event_fd_ < 0) throw std::runtime_error("eventfd failed");
  eventfd_completion_.fn = &Loop::on_eventfd;
  eventfd_completion_.owner = this;
  msg_arrived_completion_.fn = &Loop::on_msg_ring_arrived;
  msg_arrived_completion_.owner = this;
  msg_sent_completion_.fn = &Loop::on_msg_ring_sent;
  msg_sent_completion_.owner = this;
  arm_eventfd();
}

Loop::~Loop() {
  io_uring_queue_exit(&ring_);
  if (event_fd_ >= 0) ::close(event_fd_);
}

io_uring_sqe* Loop::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    // The submission queue is full: hand what we have to the kernel and try again.
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  TICKETD_CHECK(sqe != nullptr);
  return sqe;
}

void Loop::accept_multishot(int listen_fd, Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data(sqe, c);
}

void Loop::recv_multishot(int fd, uint16_t buf_group, Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = buf_group;
  io_uring_sqe_set_data(sqe, c);
}

void Loop::send(int fd, const void* buf, size_t len, Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, c);
}

void Loop::write(int fd, const void* buf, size_t len, uint64_t offset, bool dsync,
                 Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_write(sqe, fd, buf, static_cast<unsigned>(len), offset);
  if (dsync) sqe->rw_flags = RWF_DSYNC;
  io_uring_sqe_set_data(sqe, c);
}

void Loop::fdatasync(int fd, Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data(sqe, c);
}

void Loop::read(int fd, void* buf, size_t len, uint64_t offset, Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, fd, buf, static_cast<unsigned>(len), offset);
  io_uring_sqe_set_data(sqe, c);
}

void Loop::connect(int fd, const void* addr, uint32_t addrlen, Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_connect(sqe, fd, static_cast<const sockaddr*>(addr), addrlen);
  io_uring_sqe_set_data(sqe, c);
}

void Loop::timeout(__kernel_timespec* ts, Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_timeout(sqe, ts, 0, 0);
  io_uring_sqe_set_data(sqe, c);
}

void Loop::cancel(Completion* target, Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel(sqe, target, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data(sqe, c);
}

void Loop::nop(Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data(sqe, c);
}

void Loop::arm_eventfd() {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, event_fd_, &event_buf_, sizeof(event_buf_), 0);
  io_uring_sqe_set_data(sqe, &eventfd_completion_);
}

void Loop::wake(Loop* from) {
  // Fold many wakes into one: only the first sender after the target drained sends.
  // acq_rel pairs with the exchange(false) in handle_wake(), so whatever the sender
  // published before waking is visible to the target's handler.
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  if (from != nullptr && from != this && msg_ring_works_.load(std::memory_order_relaxed)) {
    io_uring_sqe* sqe = from->get_sqe();
    io_uring_prep_msg_ring(sqe, ring_.ring_fd, 0,
                           reinterpret_cast<uint64_t>(&msg_arrived_completion_), 0);
    io_uring_sqe_set_data(sqe, &msg_sent_completion_);
    return;
  }
  uint64_t one = 1;
  ssize_t n = ::write(event_fd_, &one, sizeof(one));
  (void)n;  // an eventfd counter cannot overflow in practice; a failed write is folded
}

void Loop::on_msg_ring_sent(Completion* c, int32_t res, uint32_t) {
  // Runs on the SENDER's thread; `owner` is the target loop. If the kernel refused
  // MSG_RING, fall back to the eventfd for good so that no wake is ever lost.
  auto* target = static_cast<Loop*>(c->owner);
  if (res < 0) {
    target->msg_ring_works_.store(false, std::memory_order_relaxed);
    uint64_t one = 1;
    ssize_t n = ::write(target->event_fd_, &one, sizeof(one));
    (void)n;
  }
}

void Loop::on_msg_ring_arrived(Completion* c, int32_t, uint32_t) {
  static_cast<Loop*>(c->owner)->handle_wake();
}

void Loop::on_eventfd(Completion* c, int32_t, uint32_t) {
  auto* loop = static_cast<Loop*>(c->owner);
  loop->arm_eventfd();
  loop->handle_wake();
}

void Loop::handle_wake() {
  wake_pending_.exchange(false, std::memory_order_acq_rel);
  if (on_wake_) on_wake_();
}

void Loop::stop() {
  stop_.store(true, std::memory_order_release);
  wake();
}

int Loop::run_once(bool wait) {
  int ret;
  if (wait) {
    ret = io_uring_submit_and_wait(&ring_, 1);
  } else {
    ret = io_uring_submit(&ring_);
    if (setup_mode_ == "defer_taskrun") {
      // With DEFER_TASKRUN completions are only posted when we enter the kernel asking
      // for events; peek alone would miss them.
      io_uring_get_events(&ring_);
    }
  }
  if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY && ret != -EAGAIN) {
    throw std::runtime_error(std::string("io_uring_submit: ") + std::strerror(-ret));
  }
  int handled = 0;
  for (;;) {
    io_uring_cqe* cqe;
    unsigned head;
    unsigned n = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++n;
      auto* c = reinterpret_cast<Completion*>(io_uring_cqe_get_data(cqe));
      int32_t res = cqe->res;
      uint32_t flags = cqe->flags;
      // Mark seen before the callback: the callback may submit and even run nested work.
      io_uring_cqe_seen(&ring_, cqe);
      if (c != nullptr && c->fn != nullptr) c->fn(c, res, flags);
    }
    if (n == 0) break;
    handled += static_cast<int>(n);
  }
  ++turns_;
  if (on_turn_end_) on_turn_end_();
  return handled;
}

void Loop::run() {
  while (!stopping()) run_once(true);
}

BufferRing::BufferRing(Loop& loop, uint16_t group_id, unsigned count, unsigned buf_size)
    : loop_(loop), group_id_(group_id), count_(count), buf_size_(buf_size) {
  TICKETD_CHECK(count > 0 && (count & (count - 1)) == 0 && count <= 32768);
  br_bytes_ = sizeof(io_uring_buf) * count;
  void* mem = ::mmap(nullptr, br_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1,
                     0);
  if (mem == MAP_FAILED) throw std::runtime_error("mmap for buffer ring failed");
  br_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(br_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br_);
  reg.ring_entries = count;
  reg.bgid = group_id;
  int ret = io_uring_register_buf_ring(loop_.ring(), &reg, 0);
  if (ret < 0) {
    ::munmap(br_, br_bytes_);
    throw std::runtime_error(std::string("io_uring_register_buf_ring: ") + std::strerror(-ret));
  }
  // aligned_alloc wants the size to be a multiple of the alignment.
  size_t bytes = (static_cast<size_t>(count) * buf_size + 4095) & ~size_t{4095};
  data_ = static_cast<char*>(std::aligned_alloc(4096, bytes));
  TICKETD_CHECK(data_ != nullptr);
  int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i) {
    io_uring_buf_ring_add(br_, buffer(static_cast<uint16_t>(i)), buf_size,
                          static_cast<uint16_t>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(br_, static_cast<int>(count));
}

BufferRing::~BufferRing() {
  io_uring_unregister_buf_ring(loop_.ring(), group_id_);
  ::munmap(br_, br_bytes_);
  std::free(data_);
}

void BufferRing::recycle(uint16_t bid) {
  io_uring_buf_ring_add(br_, buffer(bid), buf_size_, bid, io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
}

bool parse_host_port(const std::string& s, std::string* host, uint16_t* port) {
  std::string h;
  std::string p;
  auto colon = s.rfind(':');
  if (colon == std::string::npos) {
    p = s;
  } else {
    h = s.substr(0, colon);
    p = s.substr(colon + 1);
  }
  if (!h.empty() && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (p.empty()) return false;
  unsigned v = 0;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (ec != std::errc() || ptr != p.data() + p.size() || v == 0 || v > 65535) return false;
  *host = h;
  *port = static_cast<uint16_t>(v);
  return true;
}

int listen_tcp(const std::string& host, uint16_t port, bool reuseport, std::string* err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port_s = std::to_string(port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port_s.c_str(), &hints, &res);
  if (rc != 0) {
    *err = "cannot resolve '" + host + "': " + gai_strerror(rc);
    return -EINVAL;
  }
  // Prefer IPv4 for an empty host (the seed binds every interface).
  addrinfo* pick = res;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  int fd = ::socket(pick->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    ::freeaddrinfo(res);
    *err = std::string("socket: ") + std::strerror(e);
    return -e;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuseport) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (::bind(fd, pick->ai_addr, pick->ai_addrlen) < 0 || ::listen(fd, 4096) < 0) {
    int e = errno;
    ::freeaddrinfo(res);
    ::close(fd);
    *err = "cannot listen on " + (host.empty() ? std::string("*") : host) + ":" + port_s + ": " +
           std::strerror(e);
    return -e;
  }
  ::freeaddrinfo(res);
  return fd;
}

bool something_listens(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string h = host.empty() || host == "0.0.0.0" ? "127.0.0.1" : host;
  if (::getaddrinfo(h.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return false;
  bool up = false;
  for (addrinfo* a = res; a != nullptr && !up; a = a->ai_next) {
    int fd = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    up = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0;
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return up;
}

uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

bool peer_is_loopback(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return false;
  if (ss.ss_family == AF_INET) {
    uint32_t a = ntohl(reinterpret_cast<sockaddr_in*>(&ss)->sin_addr.s_addr);
    return (a >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace ticketd::io
