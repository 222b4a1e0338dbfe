// Tests for the Raft peer transport: real sockets on 127.0.0.1 (port 0), several transports
// on one io::Loop in this thread, raw sockets for hostile input.
// src/server headers are private to the server library; reach them by path.
#include "../../src/cluster/peer_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ticketd/raft/codec.h"

namespace ticketd::cluster {
namespace {

using raft::Message;
using raft::MessageType;

Message make_msg(MessageType type, uint64_t from, uint64_t to, uint64_t i) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = 3 + i;
  m.log_term = 2 + (i % 5);
  m.index = 100 + i;
  m.commit = 99 + (i % 7);
  m.reject = (i % 2) == 1;
  m.transfer = (i % 3) == 0;
  m.hint_index = i * 11;
  m.hint_term = i % 4;
  if (type == MessageType::kAppend) {
    for (uint64_t k = 0; k < 3; ++k) {
      raft::Entry e;
      e.term = m.term;
      e.index = m.index + k + 1;
      e.type = static_cast<raft::EntryType>(k);
      e.data = "entry-" + std::to_string(i) + "-" + std::to_string(k);
      m.entries.push_back(e);
    }
  }
  if (type == MessageType::kInstallSnapshot) {
    raft::Snapshot s;
    s.index = 50 + i;
    s.term = 2;
    s.configuration.servers = {{1, raft::Suffrage::kVoter, "ctx-1"},
                               {2, raft::Suffrage::kNonVoter, "ctx-2"}};
    s.data.resize(200000);
    for (size_t k = 0; k < s.data.size(); ++k) s.data[k] = static_cast<char>((k * 31 + i) & 0xff);
    m.snapshot = std::move(s);
  }
  return m;
}

// A raw, non-blocking TCP client for hostile input.
int connect_raw(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    off += static_cast<size_t>(n);
  }
}

// True once the other side has closed the connection (EOF or reset).
bool raw_closed(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

// A port that nothing listens on (briefly bound, then released).
uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

std::string addr(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

// A listener on loopback that nobody serves (it accepts only when the test does): its fd,
// and its port in *port.
int listen_raw(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  EXPECT_EQ(::listen(fd, 8), 0);
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  *port = ntohs(sa.sin_port);
  return fd;
}

bool any_contains(const std::vector<std::string>& logs, const std::string& needle) {
  return std::any_of(logs.begin(), logs.end(),
                     [&](const std::string& s) { return s.find(needle) != std::string::npos; });
}

struct TestNode {
  uint64_t id = 0;
  std::unique_ptr<PeerTransport> t;
  std::vector<Message> got;
  std::vector<PeerHello> hellos;
  std::vector<std::string> logs;
  std::string refuse_reason;  // what check_hello answers
  bool dial_back = false;     // on_hello: set_peer(caller, its raft address), as the server does
};

class PeerTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_.set_on_turn_end([this] {
      for (TestNode* n : live_) n->t->flush();
    });
    tick_c_.owner = this;
    tick_c_.fn = [](io::Completion* c, int32_t, uint32_t) {
      static_cast<PeerTransportTest*>(c->owner)->tick_armed_ = false;
    };
  }

  void TearDown() override {
    while (!live_.empty()) stop(live_.back());
    while (tick_armed_) loop_.run_once(true);
  }

  TestNode* start(uint64_t id, uint64_t cluster, uint16_t port = 0,
                  std::function<void(PeerTransport::Options&)> tweak = nullptr) {
    auto n = std::make_unique<TestNode>();
    TestNode* p = n.get();
    p->id = id;
    PeerTransport::Options o;
    o.self_id = id;
    o.cluster_id = cluster;
    o.incarnation = 1000 + id;
    o.listen_addr = "127.0.0.1:" + std::to_string(port);
    o.service_addr = "127.0.0.1:1100" + std::to_string(id);
    o.raft_addr = "127.0.0.1:1200" + std::to_string(id);
    o.backoff_min_ms = 5;
    o.backoff_max_ms = 50;
    if (tweak) tweak(o);
    PeerTransport::Hooks h;
    h.on_message = [p](Message&& m) { p->got.push_back(std::move(m)); };
    h.check_hello = [p](const PeerHello&) { return p->refuse_reason; };
    h.on_hello = [p](const PeerHello& ph) {
      p->hellos.push_back(ph);
      if (p->dial_back && !ph.raft_addr.empty()) p->t->set_peer(ph.node_id, ph.raft_addr);
    };
    h.log = [p](std::string_view s) { p->logs.emplace_back(s); };
    p->t = std::make_unique<PeerTransport>(loop_, next_group_++, o, h);
    std::string err;
    EXPECT_TRUE(p->t->listen(&err)) << err;
    nodes_.push_back(std::move(n));
    live_.push_back(p);
    return p;
  }

  // Shuts the node's transport down (as a crash-free stop) and checks nothing is left.
  void stop(TestNode* n) {
    live_.erase(std::find(live_.begin(), live_.end(), n));
    n->t->shutdown();
    EXPECT_EQ(n->t->inflight_ops(), 0u);
    n->t.reset();
  }

  // Turns the loop until pred() holds or the deadline passes; a short tick timer keeps each
  // turn from blocking long.
  bool run_until(const std::function<bool()>& pred, int ms = 5000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (!tick_armed_) {
        tick_armed_ = true;
        loop_.timeout(&tick_ts_, &tick_c_);
      }
      loop_.run_once(true);
    }
    return true;
  }
  void run_for(int ms) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    run_until([&] { return std::chrono::steady_clock::now() >= until; }, ms + 1000);
  }

  // Like raft: resend a message every few ms until one arrives (messages sent on a link that
  // is then refused are lost). Only messages sent from now on may arrive.
  bool retry_until_delivered(TestNode* from, TestNode* to, uint64_t first_i) {
    uint64_t i = first_i;
    size_t before = to->got.size();
    bool ok = run_until(
        [&] {
          if (to->got.size() > before) return true;
          from->t->send(make_msg(MessageType::kHeartbeat, from->id, to->id, i++));
          run_for(5);
          return false;
        },
        3000);
    if (!ok) return false;
    for (size_t k = before; k < to->got.size(); ++k) {
      if (to->got[k].index < 100 + first_i) return false;
    }
    return true;
  }

  void link(TestNode* a, TestNode* b) {
    a->t->set_peer(b->id, addr(b->t->listen_port()));
    b->t->set_peer(a->id, addr(a->t->listen_port()));
  }

  io::Loop loop_;
  io::Completion tick_c_;
  __kernel_timespec tick_ts_{0, 2 * 1000 * 1000};
  bool tick_armed_ = false;
  uint16_t next_group_ = 40;
  std::vector<std::unique_ptr<TestNode>> nodes_;
  std::vector<TestNode*> live_;
};

// ---- Framing, without sockets ----

// Every flipped bit-5 and every prefix of a hello payload is refused.
void expect_every_corruption_refused(const std::string& payload) {
  for (size_t i = 0; i < payload.size(); ++i) {
    std::string bad = payload;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    PeerHello x;
    EXPECT_NE(decode_hello(bad, &x), "") << "flip at " << i;
  }
  for (size_t n = 0; n < payload.size(); ++n) {
    PeerHello x;
    EXPECT_NE(decode_hello(std::string_view(payload).substr(0, n), &x), "") << "prefix " << n;
  }
}

TEST(PeerFrames, HelloRoundTripsAndEveryCorruptionIsRejected) {
  PeerHello h{7, 2, 99, "10.0.0.2:11002", "10.0.0.2:12002", 5};
  std::string frame;
  append_hello_frame(h, &frame);
  ASSERT_GT(frame.size(), kPeerFrameHeader);
  EXPECT_EQ(static_cast<uint8_t>(frame[4]), static_cast<uint8_t>(PeerFrameKind::kHello));
  std::string payload = frame.substr(kPeerFrameHeader);
  PeerHello back;
  ASSERT_EQ(decode_hello(payload, &back), "");
  EXPECT_EQ(back, h);
  expect_every_corruption_refused(payload);
}

TEST(PeerFrames, ReaderReassemblesAtEverySplit) {
  std::string stream;
  append_hello_frame(PeerHello{1, 3, 4, "a:1", "b:2"}, &stream);
  std::vector<Message> msgs = {make_msg(MessageType::kAppend, 3, 1, 1),
                               make_msg(MessageType::kVote, 3, 1, 2),
                               make_msg(MessageType::kHeartbeat, 3, 1, 3)};
  for (const Message& m : msgs) ASSERT_TRUE(append_message_frame(m, 1u << 20, &stream));
  append_refuse_frame("go away", &stream);
  auto collect = [&](const std::vector<size_t>& cuts) {
    PeerFrameReader r(1u << 20);
    std::vector<std::pair<uint8_t, std::string>> frames;
    size_t prev = 0;
    for (size_t cut : cuts) {
      EXPECT_TRUE(r.feed(stream.data() + prev, cut - prev, [&](uint8_t k, std::string_view p) {
        frames.emplace_back(k, std::string(p));
        return true;
      }));
      prev = cut;
    }
    EXPECT_EQ(r.buffered(), 0u);
    return frames;
  };
  auto whole = collect({stream.size()});
  ASSERT_EQ(whole.size(), 5u);
  EXPECT_EQ(whole[0].first, static_cast<uint8_t>(PeerFrameKind::kHello));
  for (size_t i = 0; i < msgs.size(); ++i) {
    EXPECT_EQ(whole[i + 1].first, static_cast<uint8_t>(PeerFrameKind::kMessage));
    Message m;
    ASSERT_EQ(raft::decode(whole[i + 1].second, &m), "");
    EXPECT_EQ(m, msgs[i]);
  }
  EXPECT_EQ(whole[4].second, "go away");
  for (size_t a = 1; a < stream.size(); ++a) {
    ASSERT_EQ(collect({a, stream.size()}), whole) << "split at " << a;
  }
  // Byte by byte, too.
  std::vector<size_t> cuts;
  for (size_t a = 1; a <= stream.size(); ++a) cuts.push_back(a);
  EXPECT_EQ(collect(cuts), whole);
}

TEST(PeerFrames, ReaderRejectsZeroAndOversizedLengths) {
  for (uint32_t len : {0u, 1025u, 0xFFFFFFFFu}) {
    for (size_t split : {size_t{1}, size_t{3}, size_t{4}, size_t{9}}) {
      std::string s(4, '\0');
      std::memcpy(s.data(), &len, 4);
      s.append("xxxxx");
      PeerFrameReader r(1024);
      int frames = 0;
      auto cb = [&](uint8_t, std::string_view) {
        ++frames;
        return true;
      };
      bool ok = r.feed(s.data(), split, cb) && r.feed(s.data() + split, s.size() - split, cb);
      EXPECT_FALSE(ok) << "len " << len << " split " << split;
      EXPECT_TRUE(r.failed());
      EXPECT_EQ(frames, 0);
    }
  }
  // The largest allowed length is accepted.
  std::string s;
  uint32_t len = 1024;
  s.append(reinterpret_cast<const char*>(&len), 4);
  s.append(1024, 'k');
  PeerFrameReader r(1024);
  int frames = 0;
  EXPECT_TRUE(r.feed(s.data(), s.size(), [&](uint8_t, std::string_view p) {
    ++frames;
    return p.size() == 1023;
  }));
  EXPECT_EQ(frames, 1);
}

TEST(PeerFrames, OversizedMessageIsNotFramed) {
  Message m = make_msg(MessageType::kInstallSnapshot, 1, 2, 0);
  std::string out = "keep";
  EXPECT_FALSE(append_message_frame(m, 1000, &out));
  EXPECT_EQ(out, "keep");
}

// ---- Over real sockets ----

TEST_F(PeerTransportTest, EveryMessageTypeArrivesIntactAndInOrder) {
  TestNode* a = start(1, 7);
  TestNode* b = start(2, 7);
  TestNode* c = start(3, 0);  // cluster id not known yet: accepted by both
  link(a, b);
  link(a, c);
  link(b, c);
  std::vector<Message> ab, ba, ca;
  for (int round = 0; round < 2; ++round) {
    for (int t = 0; t < raft::kMessageTypeCount; ++t) {
      auto type = static_cast<MessageType>(t);
      ab.push_back(make_msg(type, 1, 2, ab.size()));
      ba.push_back(make_msg(type, 2, 1, ba.size() + 1000));
      ca.push_back(make_msg(type, 3, 1, ca.size() + 2000));
      a->t->send(ab.back());
      b->t->send(ba.back());
      c->t->send(ca.back());
    }
    loop_.run_once(false);
  }
  ASSERT_TRUE(run_until(
      [&] { return b->got.size() >= ab.size() && a->got.size() >= ba.size() + ca.size(); }));
  run_for(20);  // nothing extra arrives
  EXPECT_EQ(b->got, ab);
  std::vector<Message> from_b, from_c;
  for (const Message& m : a->got) (m.from == 2 ? from_b : from_c).push_back(m);
  EXPECT_EQ(from_b, ba);
  EXPECT_EQ(from_c, ca);
  EXPECT_TRUE(c->got.empty());
  EXPECT_TRUE(a->t->connected(2));
  EXPECT_TRUE(a->t->connected(3));
  EXPECT_FALSE(a->t->connected(9));
  EXPECT_EQ(a->t->stats().sent_msgs, ab.size());
  EXPECT_EQ(b->t->stats().recv_msgs, ab.size());
  EXPECT_EQ(a->t->stats().dropped_msgs, 0u);
  EXPECT_EQ(b->t->stats().bad_frames, 0u);
  // The hello carried the peer's identity and addresses.
  ASSERT_FALSE(b->hellos.empty());
  auto h = std::find_if(b->hellos.begin(), b->hellos.end(),
                        [](const PeerHello& x) { return x.node_id == 1; });
  ASSERT_NE(h, b->hellos.end());
  EXPECT_EQ(h->cluster_id, 7u);
  EXPECT_EQ(h->incarnation, 1001u);
  EXPECT_EQ(h->service_addr, "127.0.0.1:11001");
  EXPECT_EQ(h->raft_addr, "127.0.0.1:12001");
}

TEST_F(PeerTransportTest, BigBatchArrivesComplete) {
  TestNode* a = start(1, 7);
  TestNode* b = start(2, 7);
  link(a, b);
  constexpr uint64_t kCount = 10000;
  Message big = make_msg(MessageType::kInstallSnapshot, 1, 2, 5000);
  big.snapshot->data.assign(8u << 20, 'S');  // spans many receive buffers
  for (uint64_t i = 0; i < kCount; ++i) {
    if (i == 5000) {
      a->t->send(big);
      continue;
    }
    Message m = make_msg(MessageType::kAppend, 1, 2, i);
    m.entries.resize(1);
    m.entries[0].data.assign(100, static_cast<char>('a' + i % 26));
    a->t->send(m);
    if (i % 1000 == 999) loop_.run_once(false);
  }
  ASSERT_TRUE(run_until([&] { return b->got.size() >= kCount; }, 20000)) << b->got.size();
  ASSERT_EQ(b->got.size(), kCount);
  for (uint64_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(b->got[i].index, 100 + i) << i;
  }
  EXPECT_EQ(b->got[5000], big);
  EXPECT_EQ(a->t->stats().dropped_msgs, 0u);
  EXPECT_EQ(a->t->stats().sent_msgs, kCount);
}

TEST_F(PeerTransportTest, WrongClusterIdIsRefusedWithReason) {
  TestNode* a = start(1, 1);
  TestNode* b = start(2, 2);
  link(a, b);
  a->t->send(make_msg(MessageType::kHeartbeat, 1, 2, 1));
  b->t->send(make_msg(MessageType::kHeartbeat, 2, 1, 1));
  ASSERT_TRUE(run_until(
      [&] { return a->t->stats().refused_by_peer >= 1 && b->t->stats().refused_by_peer >= 1; }));
  run_for(30);
  EXPECT_TRUE(a->got.empty());
  EXPECT_TRUE(b->got.empty());
  EXPECT_GE(a->t->stats().refused_hellos, 1u);
  EXPECT_GE(b->t->stats().refused_hellos, 1u);
  EXPECT_TRUE(any_contains(b->logs, "cluster id mismatch: ours 2, theirs 1"));
  // The refusing side's reason reaches the refused side's log.
  EXPECT_TRUE(any_contains(a->logs, "refused our hello: cluster id mismatch: ours 2, theirs 1"));
  EXPECT_TRUE(b->hellos.empty());
  // Once the cluster id is learnt (set_cluster_id), the next attempt is accepted.
  a->t->set_cluster_id(2);
  EXPECT_TRUE(retry_until_delivered(a, b, 10));
}

TEST_F(PeerTransportTest, CheckHelloRefusalIsLoggedByBothSidesAndNotPermanent) {
  TestNode* a = start(1, 7);
  TestNode* b = start(2, 7);
  b->refuse_reason = "node 1 is not in the configuration";
  a->t->set_peer(2, addr(b->t->listen_port()));
  a->t->send(make_msg(MessageType::kVote, 1, 2, 1));
  ASSERT_TRUE(run_until([&] { return a->t->stats().refused_by_peer >= 1; }));
  run_for(20);
  EXPECT_TRUE(b->got.empty());
  EXPECT_GE(b->t->stats().refused_hellos, 1u);
  EXPECT_TRUE(any_contains(b->logs, "node 1 is not in the configuration"));
  EXPECT_TRUE(any_contains(a->logs, "refused our hello: node 1 is not in the configuration"));
  EXPECT_FALSE(a->t->connected(2));
  // Refusal is not permanent: once the hook accepts, the next attempt gets through.
  b->refuse_reason.clear();
  EXPECT_TRUE(retry_until_delivered(a, b, 10));
  ASSERT_EQ(b->hellos.size(), 1u);
  EXPECT_EQ(b->hellos[0].node_id, 1u);
}

TEST_F(PeerTransportTest, OwnIdAndZeroIdAreRefused) {
  TestNode* b = start(2, 7);
  for (uint64_t id : {0ull, 2ull}) {
    int fd = connect_raw(b->t->listen_port());
    ASSERT_GE(fd, 0);
    std::string s;
    append_hello_frame(PeerHello{7, id, 1, "x", "y"}, &s);
    send_all(fd, s);
    ASSERT_TRUE(run_until([&] { return raw_closed(fd); }));
    ::close(fd);
  }
  EXPECT_EQ(b->t->stats().refused_hellos, 2u);
  EXPECT_TRUE(any_contains(b->logs, "node id 0 is not valid"));
  EXPECT_TRUE(any_contains(b->logs, "node id 2 is our own id"));
}

// An address that changed hands: node 3 was removed and node 2 now listens where node 3 did.
// Node 1 still has its old link "to node 3" besides its real link to node 2. Node 2 must
// refuse the stale one (it is meant for node 3) instead of taking it for a newer link from
// node 1, which closed the real link, whose reconnect closed the stale one, and so on.
TEST_F(PeerTransportTest, HelloMeantForAnotherIdIsRefusedAndLeavesTheRealLinkAlone) {
  TestNode* a = start(1, 7);
  TestNode* b = start(2, 7);
  a->t->set_peer(2, addr(b->t->listen_port()));
  EXPECT_TRUE(retry_until_delivered(a, b, 1));
  a->t->set_peer(3, addr(b->t->listen_port()));  // the stale link to the old owner
  a->t->send(make_msg(MessageType::kHeartbeat, 1, 3, 1));
  ASSERT_TRUE(run_until([&] { return a->t->stats().refused_by_peer >= 1; }));
  run_for(300);  // several reconnect attempts of the stale link
  EXPECT_TRUE(any_contains(b->logs, "this address belongs to node 2, not node 3"));
  EXPECT_TRUE(any_contains(a->logs, "refused our hello: this address belongs to node 2"));
  EXPECT_FALSE(any_contains(b->logs, "replaced by a newer link"));
  // The real link never broke: node 2 accepted node 1 exactly once, and still hears it.
  EXPECT_EQ(b->hellos.size(), 1u);
  EXPECT_TRUE(retry_until_delivered(a, b, 100));
  EXPECT_EQ(b->hellos.size(), 1u);
}

TEST_F(PeerTransportTest, HostileInputClosesOnlyThatLink) {
  TestNode* a = start(1, 7);
  TestNode* b = start(2, 7);
  link(a, b);
  a->t->send(make_msg(MessageType::kAppend, 1, 2, 0));
  ASSERT_TRUE(run_until([&] { return b->got.size() == 1; }));

  std::string hello3;
  append_hello_frame(PeerHello{7, 3, 1, "s", "r"}, &hello3);
  std::string good_msg;
  ASSERT_TRUE(append_message_frame(make_msg(MessageType::kAppend, 3, 2, 1), 1u << 20, &good_msg));
  std::string corrupt = good_msg;
  corrupt[corrupt.size() / 2] ^= 0x01;
  std::string wrong_from;
  ASSERT_TRUE(append_message_frame(make_msg(MessageType::kAppend, 4, 2, 1), 1u << 20, &wrong_from));
  std::string wrong_to;
  ASSERT_TRUE(append_message_frame(make_msg(MessageType::kAppend, 3, 5, 1), 1u << 20, &wrong_to));
  std::string huge = std::string("\xF0\xFF\xFF\x7F", 4) + "payload";
  std::string zero = std::string("\0\0\0\0", 4) + "x";
  std::string bad_hello = hello3;
  bad_hello[10] ^= 0x40;
  std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

  struct Case {
    const char* name;
    std::string bytes;
    uint64_t delivered;  // messages that legitimately reach raft before the bad part
  };
  std::vector<Case> cases = {
      {"garbage", garbage, 0},
      {"huge length", huge, 0},
      {"zero length", zero, 0},
      {"message before hello", good_msg, 0},
      {"corrupt hello", bad_hello, 0},
      {"hello then corrupt message", hello3 + corrupt, 0},
      {"hello, good message, then corrupt", hello3 + good_msg + corrupt, 1},
      {"hello then wrong from", hello3 + wrong_from, 0},
      {"hello then wrong to", hello3 + wrong_to, 0},
      {"hello twice", hello3 + hello3, 0},
  };
  uint64_t expect_bad = 0;
  uint64_t expect_got = b->got.size();
  for (const Case& c : cases) {
    int fd = connect_raw(b->t->listen_port());
    ASSERT_GE(fd, 0);
    send_all(fd, c.bytes);
    ASSERT_TRUE(run_until([&] { return raw_closed(fd); })) << c.name;
    ::close(fd);
    ++expect_bad;
    expect_got += c.delivered;
    EXPECT_EQ(b->t->stats().bad_frames, expect_bad) << c.name;
    EXPECT_EQ(b->got.size(), expect_got) << c.name;
  }
  // A hello with a message whose length is cut short and then EOF: closed, nothing delivered.
  {
    int fd = connect_raw(b->t->listen_port());
    send_all(fd, hello3 + good_msg.substr(0, good_msg.size() - 3));
    ::shutdown(fd, SHUT_WR);
    ASSERT_TRUE(run_until([&] { return raw_closed(fd); }));
    ::close(fd);
    EXPECT_EQ(b->got.size(), expect_got);
  }
  // The good peer is still served, on the same link.
  EXPECT_TRUE(a->t->connected(2));
  uint64_t connects = a->t->stats().connects;
  a->t->send(make_msg(MessageType::kAppend, 1, 2, 77));
  ASSERT_TRUE(run_until([&] { return b->got.size() == expect_got + 1; }));
  EXPECT_EQ(b->got.back(), make_msg(MessageType::kAppend, 1, 2, 77));
  EXPECT_EQ(a->t->stats().connects, connects);
}


// ---- Strangers: what an unauthenticated or buggy caller can make us hold (issue 10) ----

TEST_F(PeerTransportTest, FrameBeforeTheHelloIsCappedToAHellosSize) {
  TestNode* b = start(2, 7);
  int fd = connect_raw(b->t->listen_port());
  ASSERT_GE(fd, 0);
  // 32 MiB declared (under max_frame_bytes): before a hello that is no frame we would read.
  send_all(fd, std::string("\x00\x00\x00\x02", 4) + std::string(100, 'x'));
  EXPECT_TRUE(run_until([&] { return raw_closed(fd); }, 1000));
  ::close(fd);
  EXPECT_EQ(b->t->stats().bad_frames, 1u);
  EXPECT_TRUE(any_contains(b->logs, "bad frame length 33554432"));
}

TEST_F(PeerTransportTest, SilentConnectionIsClosedAfterTheHelloTimeout) {
  TestNode* b = start(2, 7, 0, [](PeerTransport::Options& o) { o.hello_timeout_ms = 200; });
  int fd = connect_raw(b->t->listen_port());
  ASSERT_GE(fd, 0);
  run_for(50);
  EXPECT_FALSE(raw_closed(fd));
  EXPECT_TRUE(run_until([&] { return raw_closed(fd); }, 3000));
  ::close(fd);
  EXPECT_EQ(b->t->stats().hello_timeouts, 1u);
  EXPECT_TRUE(any_contains(b->logs, "no hello within 200 ms"));
  // A refused caller that keeps its end open is closed the same way.
  fd = connect_raw(b->t->listen_port());
  std::string s;
  append_hello_frame(PeerHello{8, 5, 1, "x", "y"}, &s);
  send_all(fd, s);
  EXPECT_TRUE(run_until([&] { return b->t->stats().hello_timeouts == 2; }, 3000));
  EXPECT_TRUE(run_until([&] { return b->t->inbound_conns() == 0; }));
  ::close(fd);
}

TEST_F(PeerTransportTest, InboundConnectionsAreCapped) {
  TestNode* b = start(2, 7, 0, [](PeerTransport::Options& o) {
    o.max_unhelloed = 3;
    o.max_inbound = 5;
  });
  std::vector<int> fds;
  for (int i = 0; i < 8; ++i) fds.push_back(connect_raw(b->t->listen_port()));
  ASSERT_TRUE(run_until([&] { return b->t->stats().refused_conns == 5; }, 2000));
  size_t closed = 0;
  run_for(20);
  for (int fd : fds) closed += raw_closed(fd);
  EXPECT_EQ(closed, 5u);
  EXPECT_EQ(b->t->inbound_conns(), 3u);
  EXPECT_TRUE(any_contains(b->logs, "closing new inbound connections"));
  for (int fd : fds) ::close(fd);
  ASSERT_TRUE(run_until([&] { return b->t->inbound_conns() == 0; }));
  // Helloed links count towards max_inbound only: a real peer still gets in.
  TestNode* a = start(1, 7);
  a->t->set_peer(2, addr(b->t->listen_port()));
  EXPECT_TRUE(retry_until_delivered(a, b, 1));
}

TEST_F(PeerTransportTest, HelloWithoutClusterIdIsAcceptedOnlyFromAConfiguredPeer) {
  TestNode* b = start(2, 7);
  std::string hello5;
  append_hello_frame(PeerHello{0, 5, 1, "s", "r"}, &hello5);
  int fd = connect_raw(b->t->listen_port());
  send_all(fd, hello5);
  ASSERT_TRUE(run_until([&] { return raw_closed(fd); }));
  ::close(fd);
  EXPECT_EQ(b->t->stats().refused_hellos, 1u);
  EXPECT_TRUE(any_contains(b->logs, "no cluster id, and node 5 is not in our configuration"));
  EXPECT_TRUE(b->hellos.empty());
  // Node 5 is being added (our configuration names it): it may not know the id yet.
  b->t->set_peer(5, addr(free_port()));
  fd = connect_raw(b->t->listen_port());
  std::string msg;
  ASSERT_TRUE(append_message_frame(make_msg(MessageType::kAppendResp, 5, 2, 1), 1u << 20, &msg));
  send_all(fd, hello5 + msg);
  ASSERT_TRUE(run_until([&] { return b->got.size() == 1; }));
  EXPECT_FALSE(raw_closed(fd));
  ::close(fd);
}

TEST_F(PeerTransportTest, CallbackLinkToAStrangerLivesOnlyWhileItIsConnected) {
  TestNode* b = start(2, 7, 0, [](PeerTransport::Options& o) { o.max_callback_links = 2; });
  b->dial_back = true;
  uint16_t pa = free_port();
  TestNode* a = start(1, 7, pa, [&](PeerTransport::Options& o) { o.raft_addr = addr(pa); });
  ASSERT_EQ(a->t->listen_port(), pa);
  a->t->set_peer(2, addr(b->t->listen_port()));
  EXPECT_TRUE(retry_until_delivered(a, b, 1));
  // Node 2 answers node 1 (not in its configuration) over the link it dialled back.
  b->t->send(make_msg(MessageType::kAppendResp, 2, 1, 5));
  ASSERT_TRUE(run_until([&] { return a->got.size() == 1; }));
  EXPECT_TRUE(b->t->connected(1));
  // Node 1 hangs up: the link to the address it chose goes too (no dialling it for ever).
  a->t->remove_peer(2);
  ASSERT_TRUE(run_until([&] { return !b->t->connected(1); }));
  run_for(100);
  EXPECT_FALSE(b->t->connected(1));
  EXPECT_FALSE(b->t->has_peer(1));
  EXPECT_TRUE(any_contains(b->logs, "dropping the link to node 1"));
  // Strangers cannot make us hold more than max_callback_links such links.
  std::vector<int> fds;
  for (uint64_t id = 10; id < 14; ++id) {
    int fd = connect_raw(b->t->listen_port());
    std::string h;
    append_hello_frame(PeerHello{7, id, 1, "s", addr(free_port())}, &h);
    send_all(fd, h);
    fds.push_back(fd);
  }
  ASSERT_TRUE(run_until([&] {
    return std::count_if(b->hellos.begin(), b->hellos.end(),
                         [](const PeerHello& h) { return h.node_id >= 10; }) == 4;
  }));
  int callbacks = 0;
  for (uint64_t id = 10; id < 14; ++id) callbacks += b->t->has_peer(id);
  EXPECT_EQ(callbacks, 2);
  EXPECT_TRUE(any_contains(b->logs, "not dialling back node"));
  for (int fd : fds) ::close(fd);
  ASSERT_TRUE(run_until([&] {
    for (uint64_t id = 10; id < 14; ++id)
      if (b->t->has_peer(id)) return false;
    return true;
  }));
  // A configured peer (set_peer outside the hook) stays whatever its callers do.
  b->t->set_peer(1, addr(pa));
  a->t->set_peer(2, addr(b->t->listen_port()));
  EXPECT_TRUE(retry_until_delivered(a, b, 20));
  a->t->remove_peer(2);
  run_for(100);
  EXPECT_TRUE(b->t->has_peer(1));
}

TEST_F(PeerTransportTest, PeerThatRestartsIsReconnected) {
  TestNode* a = start(1, 7);
  TestNode* b = start(2, 7);
  uint16_t port_b = b->t->listen_port();
  link(a, b);
  a->t->send(make_msg(MessageType::kAppend, 1, 2, 1));
  ASSERT_TRUE(run_until([&] { return b->got.size() == 1; }));
  EXPECT_EQ(a->t->stats().connects, 1u);
  stop(b);
  ASSERT_TRUE(run_until([&] { return !a->t->connected(2); }));
  // While the peer is down, messages wait whole in the bounded queue.
  std::vector<Message> later;
  for (uint64_t i = 0; i < 5; ++i) {
    later.push_back(make_msg(MessageType::kAppend, 1, 2, 10 + i));
    a->t->send(later.back());
  }
  run_for(60);  // a few failed attempts (nothing listens)
  TestNode* b2 = start(2, 7, port_b);
  ASSERT_EQ(b2->t->listen_port(), port_b);
  ASSERT_TRUE(run_until([&] { return b2->got.size() >= later.size(); }, 3000));
  EXPECT_EQ(b2->got, later);
  EXPECT_GE(a->t->stats().reconnects, 1u);
  EXPECT_EQ(a->t->stats().connects, 2u);
  EXPECT_TRUE(a->t->connected(2));
  // And b2's own link to a works.
  b2->t->set_peer(1, addr(a->t->listen_port()));
  b2->t->send(make_msg(MessageType::kAppendResp, 2, 1, 3));
  ASSERT_TRUE(run_until([&] { return a->got.size() == 1; }));
  EXPECT_EQ(a->got[0], make_msg(MessageType::kAppendResp, 2, 1, 3));
}

TEST_F(PeerTransportTest, BrokenLinkNeverResendsATornFrame) {
  // A sink listens but never accepts: a send larger than the socket buffers stays half done.
  int sink = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(sink, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(sink, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  ASSERT_EQ(::listen(sink, 4), 0);
  socklen_t len = sizeof(sa);
  ::getsockname(sink, reinterpret_cast<sockaddr*>(&sa), &len);
  uint16_t port = ntohs(sa.sin_port);
  TestNode* a = start(1, 7);
  a->t->set_peer(2, addr(port));
  std::vector<Message> sent;
  for (uint64_t i = 0; i < 2; ++i) {
    sent.push_back(make_msg(MessageType::kInstallSnapshot, 1, 2, i));
    sent.back().snapshot->data.assign(15u << 20, static_cast<char>('p' + i));
  }
  for (uint64_t i = 2; i < 5; ++i) sent.push_back(make_msg(MessageType::kAppend, 1, 2, i));
  for (const Message& m : sent) a->t->send(m);
  ASSERT_TRUE(run_until([&] { return a->t->connected(2); }));
  run_for(30);
  ASSERT_GT(a->t->queued_bytes(2), 0u);  // stuck mid-frame
  // Closing the sink resets the half-sent connection; a real peer then takes the port.
  ::close(sink);
  ASSERT_TRUE(run_until([&] { return !a->t->connected(2); }));
  EXPECT_GE(a->t->stats().dropped_msgs, 1u);  // the torn frame
  TestNode* b = start(2, 7, port);
  ASSERT_TRUE(run_until([&] { return !b->got.empty() && b->got.back() == sent.back(); }, 5000));
  // What arrives is a whole-message suffix of what was sent, and the stream parsed cleanly.
  EXPECT_EQ(b->t->stats().bad_frames, 0u);
  ASSERT_GE(b->got.size(), 3u);
  ASSERT_LE(b->got.size(), sent.size() - 1);
  EXPECT_TRUE(
      std::equal(b->got.begin(), b->got.end(), sent.end() - static_cast<long>(b->got.size())));
  // Every message is accounted for: dropped, delivered, or fully sent into the dead sink.
  EXPECT_TRUE(run_until(
      [&] { return a->t->stats().dropped_msgs + a->t->stats().sent_msgs == sent.size(); }));
  EXPECT_EQ(a->t->stats().dropped_msgs + b->got.size() +
                (a->t->stats().sent_msgs - b->t->stats().recv_msgs),
            sent.size());
}

TEST_F(PeerTransportTest, QueueBoundDropsAndCounts) {
  uint16_t port = free_port();
  TestNode* a = start(1, 7, 0, [](PeerTransport::Options& o) { o.max_queue_bytes = 4096; });
  a->t->set_peer(2, addr(port));
  std::string one;
  ASSERT_TRUE(append_message_frame(make_msg(MessageType::kHeartbeat, 1, 2, 0), 1u << 20, &one));
  const size_t fits = 4096 / one.size();
  ASSERT_GT(fits, 2u);
  ASSERT_LT(fits, 100u);
  std::vector<Message> sent;
  for (uint64_t i = 0; i < 100; ++i) {
    // The codec is fixed-width: every heartbeat frame has the same size.
    sent.push_back(make_msg(MessageType::kHeartbeat, 1, 2, i));
    a->t->send(sent.back());
  }
  EXPECT_EQ(a->t->stats().dropped_msgs, 100 - fits);
  EXPECT_EQ(a->t->queued_bytes(2), fits * one.size());
  // To an unknown peer: dropped and counted too.
  a->t->send(make_msg(MessageType::kHeartbeat, 1, 9, 0));
  EXPECT_EQ(a->t->stats().dropped_msgs, 100 - fits + 1);
  run_for(30);  // connect attempts fail; the queue waits
  EXPECT_FALSE(a->t->connected(2));
  EXPECT_EQ(a->t->queued_bytes(2), fits * one.size());
  TestNode* b = start(2, 7, port);
  ASSERT_TRUE(run_until([&] { return b->got.size() >= fits; }, 3000));
  run_for(20);
  ASSERT_EQ(b->got.size(), fits);
  for (size_t i = 0; i < fits; ++i) EXPECT_EQ(b->got[i], sent[i]);
  EXPECT_EQ(a->t->queued_bytes(2), 0u);
}

TEST_F(PeerTransportTest, RemovePeerAndReadd) {
  TestNode* a = start(1, 7);
  TestNode* b = start(2, 7);
  link(a, b);
  a->t->send(make_msg(MessageType::kAppend, 1, 2, 1));
  ASSERT_TRUE(run_until([&] { return b->got.size() == 1; }));
  a->t->remove_peer(2);
  EXPECT_FALSE(a->t->connected(2));
  uint64_t dropped = a->t->stats().dropped_msgs;
  a->t->send(make_msg(MessageType::kAppend, 1, 2, 2));
  EXPECT_EQ(a->t->stats().dropped_msgs, dropped + 1);
  // Only the accept and the recv of b's inbound link remain: the removed link has drained.
  ASSERT_TRUE(run_until([&] { return a->t->inflight_ops() == 2; }));
  a->t->set_peer(2, addr(b->t->listen_port()));
  a->t->send(make_msg(MessageType::kAppend, 1, 2, 3));
  ASSERT_TRUE(run_until([&] { return b->got.size() == 2; }));
  EXPECT_EQ(b->got[1], make_msg(MessageType::kAppend, 1, 2, 3));
}

TEST_F(PeerTransportTest, ShutdownLeavesNothingPending) {
  TestNode* a = start(1, 7);
  TestNode* b = start(2, 7);
  link(a, b);
  // Peer 3: nothing listens (backoff timer). Peer 4: listens but never accepts or reads, so a
  // large send stays in flight.
  a->t->set_peer(3, addr(free_port()));
  uint16_t sink_port = 0;
  int sink = listen_raw(&sink_port);
  a->t->set_peer(4, addr(sink_port));
  // A raw inbound connection that stays silent.
  int raw = connect_raw(a->t->listen_port());
  ASSERT_GE(raw, 0);
  a->t->send(make_msg(MessageType::kAppend, 1, 2, 1));
  ASSERT_TRUE(run_until([&] { return b->got.size() == 1 && a->t->connected(4); }));
  Message big = make_msg(MessageType::kInstallSnapshot, 1, 4, 1);
  big.snapshot->data.assign(12u << 20, 'z');
  a->t->send(big);
  a->t->send(big);
  run_for(30);
  EXPECT_GT(a->t->queued_bytes(4), 0u);  // stuck: the sink does not read
  EXPECT_GT(a->t->inflight_ops(), 3u);
  auto t0 = std::chrono::steady_clock::now();
  stop(a);  // checks inflight_ops() == 0 after shutdown
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  // b sees its inbound link close, and keeps running.
  ASSERT_TRUE(run_until([&] { return !b->t->connected(1); }));
  EXPECT_TRUE(run_until([&] { return raw_closed(raw); }));
  ::close(raw);
  ::close(sink);
}

}  // namespace
}  // namespace ticketd::cluster

// ---- The cluster secret: a mutual challenge-response before any message ----

namespace ticketd::cluster {
namespace {

auth::Digest key_of(const char* secret) { return auth::sha256(secret); }

std::function<void(PeerTransport::Options&)> with_secret(const char* secret) {
  return [secret](PeerTransport::Options& o) {
    o.secret = key_of(secret);
    o.hello_timeout_ms = 300;
  };
}

// Reads what a raw client got within `ms`: whole frames, as (kind, payload).
std::vector<std::pair<uint8_t, std::string>> raw_frames(int fd, std::string* buf) {
  char tmp[4096];
  for (;;) {
    ssize_t n = ::recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
    if (n <= 0) break;
    buf->append(tmp, static_cast<size_t>(n));
  }
  std::vector<std::pair<uint8_t, std::string>> out;
  PeerFrameReader r(1u << 20);
  r.feed(buf->data(), buf->size(), [&](uint8_t kind, std::string_view p) {
    out.emplace_back(kind, std::string(p));
    return true;
  });
  return out;
}

TEST(PeerFrames, HandshakeFramesRoundTripAndProofsDiffer) {
  PeerHello h{7, 2, 99, "s", "r", 5};
  h.has_nonce = true;
  auth::random_bytes(h.nonce.data(), h.nonce.size());
  std::string frame;
  append_hello_frame(h, &frame);
  PeerHello back;
  ASSERT_EQ(decode_hello(std::string_view(frame).substr(kPeerFrameHeader), &back), "");
  EXPECT_EQ(back, h);
  EXPECT_EQ(static_cast<uint8_t>(frame[kPeerFrameHeader + 4]), 3);  // version 3: with a nonce
  ASSERT_LE(frame.size() - 4, kMaxHelloFrameBytes);

  PeerChallenge c{5, {}, {}};
  auth::random_bytes(c.nonce.data(), c.nonce.size());
  std::string payload = frame.substr(kPeerFrameHeader);
  auth::Digest k = key_of("a cluster secret");
  c.proof = handshake_proof(k, true, payload, 5, c.nonce);
  std::string cf;
  append_challenge_frame(c, &cf);
  PeerChallenge cb;
  ASSERT_EQ(decode_challenge(std::string_view(cf).substr(kPeerFrameHeader), &cb), "");
  EXPECT_EQ(cb.listener_id, 5u);
  EXPECT_EQ(cb.nonce, c.nonce);
  EXPECT_EQ(cb.proof, c.proof);
  EXPECT_NE(decode_challenge(std::string_view(cf).substr(kPeerFrameHeader + 1), &cb), "");
  std::string pf;
  append_proof_frame(c.proof, &pf);
  auth::Digest pb{};
  ASSERT_EQ(decode_proof(std::string_view(pf).substr(kPeerFrameHeader), &pb), "");
  EXPECT_EQ(pb, c.proof);
  EXPECT_NE(decode_proof("TKDAshort", &pb), "");

  // Each input matters: the side, the hello (its nonce and ids), the listener id and nonce,
  // and the key.
  auth::Digest d = handshake_proof(k, false, payload, 5, c.nonce);
  EXPECT_NE(d, c.proof);
  EXPECT_NE(handshake_proof(k, true, payload, 6, c.nonce), c.proof);
  PeerNonce other = c.nonce;
  other[0] ^= 1;
  EXPECT_NE(handshake_proof(k, true, payload, 5, other), c.proof);
  std::string p2 = payload;
  p2[p2.size() - 9] ^= 1;  // a byte of the dialer's nonce
  EXPECT_NE(handshake_proof(k, true, p2, 5, c.nonce), c.proof);
  EXPECT_NE(handshake_proof(key_of("another secret!!"), true, payload, 5, c.nonce), c.proof);
}

TEST_F(PeerTransportTest, SameSecretBothWaysMessagesFlow) {
  TestNode* a = start(1, 7, 0, with_secret("the cluster secret"));
  TestNode* b = start(2, 7, 0, with_secret("the cluster secret"));
  link(a, b);
  EXPECT_TRUE(retry_until_delivered(a, b, 1));
  EXPECT_TRUE(retry_until_delivered(b, a, 1));
  EXPECT_TRUE(a->t->connected(2));
  EXPECT_EQ(a->t->stats().auth_failures + b->t->stats().auth_failures, 0u);
}

TEST_F(PeerTransportTest, WrongSecretNoSecretAndNoneAtAllAreRefusedBothWays) {
  TestNode* a = start(1, 7, 0, with_secret("the cluster secret"));
  TestNode* wrong = start(2, 7, 0, with_secret("a different secret"));
  TestNode* none = start(3, 7);
  link(a, wrong);
  link(a, none);
  for (int i = 0; i < 20; ++i) {
    a->t->send(make_msg(MessageType::kHeartbeat, 1, 2, i));
    a->t->send(make_msg(MessageType::kHeartbeat, 1, 3, i));
    wrong->t->send(make_msg(MessageType::kHeartbeat, 2, 1, i));
    none->t->send(make_msg(MessageType::kHeartbeat, 3, 1, i));
    run_for(20);
  }
  EXPECT_TRUE(a->got.empty());
  EXPECT_TRUE(wrong->got.empty());
  EXPECT_TRUE(none->got.empty());
  EXPECT_FALSE(a->t->connected(2));
  EXPECT_FALSE(wrong->t->connected(1));
  EXPECT_GE(a->t->stats().auth_failures, 1u);
  EXPECT_GE(wrong->t->stats().auth_failures, 1u);
  EXPECT_TRUE(any_contains(a->logs, "failed the cluster-secret proof"));
  EXPECT_TRUE(any_contains(wrong->logs, "failed the cluster-secret proof"));
  // A node without a secret is told why, and tells a secret-holder why.
  EXPECT_TRUE(any_contains(none->logs, "refused our hello: this node requires the cluster secret"));
  EXPECT_TRUE(any_contains(a->logs, "refused our hello: this node has no cluster secret"));
  // Retries back off: a handful of attempts in 400 ms, not hundreds.
  EXPECT_LT(a->t->stats().auth_failures, 40u);
}

TEST_F(PeerTransportTest, ReplayedHelloAndForgedProofAreClosedAndTheRealLinkServes) {
  TestNode* a = start(1, 7, 0, with_secret("the cluster secret"));
  TestNode* b = start(2, 7, 0, with_secret("the cluster secret"));
  link(a, b);
  ASSERT_TRUE(retry_until_delivered(a, b, 1));

  // What a's hello to b looks like on the wire (as an eavesdropper recorded it): the same
  // fields and a nonce. Replayed to b, it gets a fresh challenge it cannot answer.
  PeerHello h{7, 1, 1001, "127.0.0.1:11001", "127.0.0.1:12001", 2};
  h.has_nonce = true;
  auth::random_bytes(h.nonce.data(), h.nonce.size());
  std::string hello;
  append_hello_frame(h, &hello);
  std::vector<PeerChallenge> challenges;
  for (int round = 0; round < 2; ++round) {
    int fd = connect_raw(b->t->listen_port());
    ASSERT_GE(fd, 0);
    send_all(fd, hello);
    std::string buf;
    std::vector<std::pair<uint8_t, std::string>> frames;
    ASSERT_TRUE(run_until([&] {
      frames = raw_frames(fd, &buf);
      return !frames.empty();
    }));
    ASSERT_EQ(frames[0].first, static_cast<uint8_t>(PeerFrameKind::kChallenge));
    PeerChallenge ch;
    ASSERT_EQ(decode_challenge(frames[0].second, &ch), "");
    challenges.push_back(ch);
    // Without the key: any proof, e.g. the listener's own, or one from a recorded handshake.
    std::string proof;
    append_proof_frame(round == 0 ? ch.proof : auth::Digest{}, &proof);
    std::string msg;
    ASSERT_TRUE(append_message_frame(make_msg(MessageType::kAppend, 1, 2, 99), 1u << 20, &msg));
    send_all(fd, proof + msg);
    ASSERT_TRUE(run_until([&] { return raw_closed(fd); }));
    ::close(fd);
  }
  EXPECT_NE(challenges[0].nonce, challenges[1].nonce);  // fresh per connection
  EXPECT_GE(b->t->stats().auth_failures, 2u);
  for (const Message& m : b->got) EXPECT_NE(m.index, 99u);  // nothing forged got through
  EXPECT_TRUE(any_contains(b->logs, "at 127.0.0.1:"));      // logged with its address
  // The real link was never disturbed.
  EXPECT_TRUE(retry_until_delivered(a, b, 200));
}

TEST_F(PeerTransportTest, APeerThatNeverChallengesIsDroppedAfterTheHelloTimeout) {
  // A listener that takes the hello and says nothing: the dialer sends no message over it.
  uint16_t port = 0;
  int lfd = listen_raw(&port);
  TestNode* a = start(1, 7, 0, with_secret("the cluster secret"));
  a->t->set_peer(9, addr(port));
  for (int i = 0; i < 5; ++i) a->t->send(make_msg(MessageType::kHeartbeat, 1, 9, i));
  ASSERT_TRUE(run_until([&] { return a->t->stats().hello_timeouts >= 1; }, 3000));
  int c = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
  ASSERT_GE(c, 0);
  std::string buf;
  auto frames = raw_frames(c, &buf);
  ASSERT_FALSE(frames.empty());
  for (auto& f : frames) EXPECT_EQ(f.first, static_cast<uint8_t>(PeerFrameKind::kHello));
  EXPECT_FALSE(a->t->connected(9));
  ::close(c);
  ::close(lfd);
}

// ---- Wire versions (rolling upgrades)

TEST(PeerFrames, HelloVersion4CarriesWireVersionsAndTheOlderHelloIsUnchanged) {
  PeerHello old{7, 2, 99, "10.0.0.2:11002", "10.0.0.2:12002", 5};
  std::string frame;
  append_hello_frame(old, &frame);
  std::string payload = frame.substr(kPeerFrameHeader);
  EXPECT_EQ(static_cast<uint8_t>(payload[4]), 2u) << "wire [1,1]: the hello of every earlier release";
  EXPECT_EQ(payload.size(), 4 + 1 + 24 + 2 + 14 + 2 + 14 + 8 + 8u);
  for (bool nonce : {false, true}) {
    PeerHello h = old;
    h.wire_min = kWireVersionMin;
    h.wire_max = kWireVersion;
    h.has_nonce = nonce;
    if (nonce) h.nonce[3] = 9;
    std::string f;
    append_hello_frame(h, &f);
    std::string p = f.substr(kPeerFrameHeader);
    EXPECT_EQ(static_cast<uint8_t>(p[4]), 4u);
    PeerHello back;
    ASSERT_EQ(decode_hello(p, &back), "");
    EXPECT_EQ(back, h);
    expect_every_corruption_refused(p);
  }
}

TEST(PeerFrames, WelcomeRoundTripsAndWireVersionsNegotiate) {
  std::string f;
  append_welcome_frame(PeerWelcome{1, 2, 2}, &f);
  EXPECT_EQ(static_cast<uint8_t>(f[4]), static_cast<uint8_t>(PeerFrameKind::kWelcome));
  PeerWelcome w;
  ASSERT_EQ(decode_welcome(f.substr(kPeerFrameHeader), &w), "");
  EXPECT_EQ(w, (PeerWelcome{1, 2, 2}));
  std::string bad;
  append_welcome_frame(PeerWelcome{1, 2, 3}, &bad);
  EXPECT_NE(decode_welcome(bad.substr(kPeerFrameHeader), &w), "") << "a choice outside its range";
  EXPECT_NE(decode_welcome(f.substr(kPeerFrameHeader, 5), &w), "");
  EXPECT_EQ(negotiate_wire(1, 2, 1, 1), 1) << "the previous release";
  EXPECT_EQ(negotiate_wire(1, 2, 1, 2), 2);
  EXPECT_EQ(negotiate_wire(1, 2, 2, 5), 2) << "a later release that still speaks ours";
  EXPECT_EQ(negotiate_wire(1, 2, 3, 5), 0) << "two releases apart";
}

TEST_F(PeerTransportTest, PeersOfThisBuildNegotiateWireVersion2) {
  TestNode* a = start(1, 7);
  TestNode* b = start(2, 7);
  link(a, b);
  EXPECT_TRUE(retry_until_delivered(a, b, 1));
  ASSERT_TRUE(run_until([&] { return a->t->wire_version(2) == kWireVersion; }));
  EXPECT_TRUE(any_contains(a->logs, "peer 2 at " + addr(b->t->listen_port()) + ": wire version 2 (it speaks 1 to 2)"));
  EXPECT_TRUE(any_contains(b->logs, "wire version 2)"));
  EXPECT_FALSE(any_contains(a->logs, "older release"));
}

// A peer of the previous release (played by a raw socket) closes a version 4 hello at once, as
// its decode_hello refuses it; the dialer then offers the older hello, which it keeps, and
// offers version 4 again once that link broke (the peer restarted: upgraded, maybe).
TEST_F(PeerTransportTest, APeerOfThePreviousReleaseGetsTheOlderHello) {
  TestNode* a = start(1, 7);
  uint16_t port = 0;
  int lfd = listen_raw(&port);
  ::fcntl(lfd, F_SETFL, O_NONBLOCK);
  a->t->set_peer(9, addr(port));
  std::vector<int> versions;  // the hello version of each connection, in order
  int kept = -1;
  auto serve = [&] {
    a->t->send(make_msg(MessageType::kHeartbeat, 1, 9, 1));
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      char buf[64];
      ssize_t n = 0;
      for (int i = 0; i < 200 && n < 10; ++i) {
        ssize_t r = ::recv(fd, buf + n, sizeof(buf) - static_cast<size_t>(n), MSG_DONTWAIT);
        if (r > 0) n += r;
        if (r <= 0) run_for(2);
      }
      int v = n >= 10 ? static_cast<uint8_t>(buf[kPeerFrameHeader + 4]) : -1;
      versions.push_back(v);
      if (v == 4 || kept >= 0) {
        ::close(fd);  // what a release before wire version 2 does with it
      } else {
        kept = fd;
      }
    }
    return kept >= 0 && a->t->wire_version(9) == kWireVersionMin;
  };
  ASSERT_TRUE(run_until(serve));
  ASSERT_GE(versions.size(), 2u);
  EXPECT_EQ(versions.front(), 4) << "this build offers its own version first";
  EXPECT_EQ(versions.back(), 2) << "then the previous release's hello";
  EXPECT_TRUE(any_contains(a->logs, "it may run an older release"));
  // The old peer goes away (an upgrade restarts it): the next connection offers version 4.
  ::close(kept);
  kept = -1;
  size_t before = versions.size();
  ASSERT_TRUE(run_until([&] {
    serve();
    return versions.size() > before;
  }));
  EXPECT_EQ(versions.back(), 4);
  if (kept >= 0) ::close(kept);
  ::close(lfd);
}

}  // namespace
}  // namespace ticketd::cluster
