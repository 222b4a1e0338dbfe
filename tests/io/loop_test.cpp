// Tests of the io loop against the real kernel: wake-ups across threads (MSG_RING and
// eventfd), timers, multishot recv into a buffer ring, sends, O_DIRECT-capable writes.
#include "ticketd/io/loop.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

namespace ticketd::io {
namespace {

TEST(Loop, SetsUpAndReportsMode) {
  Loop loop;
  EXPECT_FALSE(loop.setup_mode().empty());
  Loop plain(LoopOptions{.entries = 64, .try_defer_taskrun = false});
  EXPECT_EQ(plain.setup_mode(), "plain");
}

TEST(Loop, TimerFires) {
  Loop loop;
  __kernel_timespec ts{.tv_sec = 0, .tv_nsec = 1'000'000};
  struct State { Completion c; int res = 1; bool fired = false; } st;
  st.c.owner = &st;
  st.c.fn = [](Completion* c, int32_t res, uint32_t) {
    auto* s = static_cast<State*>(c->owner);
    s->res = res;
    s->fired = true;
  };
  loop.timeout(&ts, &st.c);
  for (int i = 0; i < 100 && !st.fired; ++i) loop.run_once(true);
  EXPECT_TRUE(st.fired);
  EXPECT_EQ(st.res, -ETIME);
}

// Many wakes from another thread, each publishing a counter: the loop must see the
// final value (no wake is lost, even when wakes fold together).
void WakeFromThread(bool use_msg_ring) {
  Loop target;
  std::atomic<int> published{0};
  int seen = 0;
  target.set_on_wake([&] { seen = published.load(std::memory_order_acquire); });
  constexpr int kN = 20000;
  std::thread sender([&] {
    Loop own;
    for (int i = 1; i <= kN; ++i) {
      published.store(i, std::memory_order_release);
      target.wake(use_msg_ring ? &own : nullptr);
      if (use_msg_ring && (i % 64 == 0)) own.run_once(false);
    }
    // Drain the sender's ring so every MSG_RING has left.
    for (int i = 0; i < 100; ++i) own.run_once(false);
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (seen != kN && std::chrono::steady_clock::now() < deadline) target.run_once(true);
  sender.join();
  EXPECT_EQ(seen, kN);
}

TEST(Loop, WakeByEventfdLosesNothing) { WakeFromThread(false); }
TEST(Loop, WakeByMsgRingLosesNothing) { WakeFromThread(true); }

TEST(Loop, StopFromAnotherThread) {
  // A ring with SINGLE_ISSUER belongs to the thread that created it: build it there.
  std::atomic<Loop*> loop{nullptr};
  std::atomic<bool> returned{false};
  std::thread t([&] {
    Loop own;
    loop.store(&own);
    own.run();
    returned.store(true);
  });
  while (loop.load() == nullptr) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let it block in the kernel
  loop.load()->stop();
  t.join();
  EXPECT_TRUE(returned.load());
}

TEST(Loop, MultishotRecvIntoBufferRingAndSend) {
  Loop loop;
  BufferRing ring(loop, 7, 8, 64);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  struct State {
    Completion recv, send;
    BufferRing* ring;
    std::string got;
    int sends = 0;
    int recv_final = 0;
  } st;
  st.ring = &ring;
  st.recv.owner = &st;
  st.recv.fn = [](Completion* c, int32_t res, uint32_t flags) {
    auto* s = static_cast<State*>(c->owner);
    if (res > 0) {
      ASSERT_TRUE(cqe_has_buffer(flags));
      uint16_t bid = cqe_buffer_id(flags);
      s->got.append(s->ring->buffer(bid), static_cast<size_t>(res));
      s->ring->recycle(bid);
    }
    if (!cqe_more(flags)) s->recv_final++;
  };
  st.send.owner = &st;
  st.send.fn = [](Completion* c, int32_t res, uint32_t) {
    auto* s = static_cast<State*>(c->owner);
    EXPECT_GT(res, 0);
    s->sends++;
  };
  loop.recv_multishot(sv[0], 7, &st.recv);
  // More data than all buffers hold at once: buffers must be recycled to get it all.
  std::string payload;
  for (int i = 0; i < 200; ++i) payload += "chunk-" + std::to_string(i) + ";";
  size_t off = 0;
  while (off < payload.size()) {
    size_t n = std::min<size_t>(100, payload.size() - off);
    ASSERT_EQ(::write(sv[1], payload.data() + off, n), static_cast<ssize_t>(n));
    off += n;
    for (int i = 0; i < 3; ++i) loop.run_once(false);
    if (st.recv_final > 0) {  // ran out of buffers (ENOBUFS): re-arm, as a server must
      st.recv_final = 0;
      loop.recv_multishot(sv[0], 7, &st.recv);
    }
  }
  for (int i = 0; i < 50 && st.got.size() < payload.size(); ++i) {
    loop.run_once(false);
    if (st.recv_final > 0) {
      st.recv_final = 0;
      loop.recv_multishot(sv[0], 7, &st.recv);
    }
  }
  EXPECT_EQ(st.got, payload);
  const char msg[] = "hello";
  loop.send(sv[0], msg, 5, &st.send);
  for (int i = 0; i < 20 && st.sends == 0; ++i) loop.run_once(true);
  char buf[8] = {};
  ASSERT_EQ(::read(sv[1], buf, 5), 5);
  EXPECT_EQ(std::string(buf, 5), "hello");
  ::close(sv[1]);
  for (int i = 0; i < 20 && st.recv_final == 0; ++i) loop.run_once(true);
  EXPECT_EQ(st.recv_final, 1);  // EOF ends the multishot recv
  ::close(sv[0]);
}

TEST(Loop, DsyncWriteAndRead) {
  Loop loop;
  char path[] = "/tmp/ticketd-io-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  struct State { Completion c; int res = 0; bool done = false; } st;
  st.c.owner = &st;
  st.c.fn = [](Completion* c, int32_t res, uint32_t) {
    auto* s = static_cast<State*>(c->owner);
    s->res = res;
    s->done = true;
  };
  const char data[] = "0123456789";
  loop.write(fd, data, 10, 4, true, &st.c);
  while (!st.done) loop.run_once(true);
  EXPECT_EQ(st.res, 10);
  char back[16] = {};
  st.done = false;
  loop.read(fd, back, 10, 4, &st.c);
  while (!st.done) loop.run_once(true);
  EXPECT_EQ(st.res, 10);
  EXPECT_EQ(std::string(back, 10), "0123456789");
  ::close(fd);
  ::unlink(path);
}

TEST(HostPort, Parses) {
  std::string h;
  uint16_t p = 0;
  EXPECT_TRUE(parse_host_port(":11001", &h, &p));
  EXPECT_EQ(h, "");
  EXPECT_EQ(p, 11001);
  EXPECT_TRUE(parse_host_port("127.0.0.1:6379", &h, &p));
  EXPECT_EQ(h, "127.0.0.1");
  EXPECT_EQ(p, 6379);
  EXPECT_TRUE(parse_host_port("8080", &h, &p));
  EXPECT_FALSE(parse_host_port("host:", &h, &p));
  EXPECT_FALSE(parse_host_port("host:99999", &h, &p));
  EXPECT_FALSE(parse_host_port("host:12x", &h, &p));
  EXPECT_FALSE(parse_host_port(":0", &h, &p));
}

TEST(Listen, ReuseportTwiceAndRefusesTaken) {
  std::string err;
  int a = listen_tcp("127.0.0.1", 0, true, &err);
  ASSERT_GE(a, 0) << err;
  uint16_t port = local_port(a);
  int b = listen_tcp("127.0.0.1", port, true, &err);
  EXPECT_GE(b, 0) << err;
  int c = listen_tcp("127.0.0.1", port, false, &err);
  EXPECT_LT(c, 0);
  EXPECT_NE(err.find("cannot listen"), std::string::npos);
  ::close(a);
  if (b >= 0) ::close(b);
}

// Connects to a listener on `host` and returns {accepted, connecting} fds, or {-1, -1}.
std::pair<int, int> loopback_pair(const char* host, int family) {
  std::string err;
  int l = listen_tcp(host, 0, false, &err);
  if (l < 0) return {-1, -1};
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(l, reinterpret_cast<sockaddr*>(&ss), &len);
  int c = ::socket(family, SOCK_STREAM, 0);
  if (c < 0 || ::connect(c, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    ::close(l);
    if (c >= 0) ::close(c);
    return {-1, -1};
  }
  int a = ::accept(l, nullptr, nullptr);
  ::close(l);
  return {a, c};
}

TEST(Peer, LoopbackPeersAreLoopback) {
  for (const char* host : {"127.0.0.1", "127.0.0.2"}) {
    auto [a, c] = loopback_pair(host, AF_INET);
    ASSERT_GE(a, 0) << host;
    EXPECT_TRUE(peer_is_loopback(a)) << host;
    EXPECT_TRUE(peer_is_loopback(c)) << host;
    ::close(a);
    ::close(c);
  }
  auto [a6, c6] = loopback_pair("::1", AF_INET6);
  if (a6 >= 0) {  // a machine without IPv6 has no ::1
    EXPECT_TRUE(peer_is_loopback(a6));
    ::close(a6);
    ::close(c6);
  }
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  EXPECT_FALSE(peer_is_loopback(sv[0]));  // not an IP peer: refused, not assumed
  ::close(sv[0]);
  ::close(sv[1]);
  EXPECT_FALSE(peer_is_loopback(-1));
}

}  // namespace
}  // namespace ticketd::io
