// driver::ReadyPipeline over a scripted storage: release waits for durability, votes and acks
// never leave early, a failed stage is retried and holds everything behind it, and committed
// entries apply once each, in order. (The simulator runs the same pipeline under faults.)
#include "ticketd/driver/ready_pipeline.h"

#include <gtest/gtest.h>

#include <vector>

namespace ticketd::driver {
namespace {

using raft::Entry;
using raft::Message;
using raft::MessageType;

// Storage whose writes complete only when the test says so.
class FakeLog : public Storage, public Application {
 public:
  bool save_hard_state(const raft::HardState& hs) override {
    if (fail_hard_state) return false;
    saved.push_back(hs);
    return true;
  }
  bool idle() const override { return !writing && staged == written; }
  bool install_snapshot(const raft::Snapshot& s) override {
    installed.push_back(s.index);
    staged = written = durable = 0;
    return true;
  }
  void truncate_from(uint64_t index) override {
    truncated.push_back(index);
    staged = std::min(staged, index - 1);
    written = std::min(written, index - 1);
    durable = std::min(durable, index - 1);
  }
  void append(const Entry& e) override { staged = e.index; }
  uint64_t last_index() const override { return staged; }
  uint64_t durable_index() const override { return durable; }
  void start_write() override {
    if (writing || staged == written) return;
    writing = true;
    write_to = staged;
    ++writes;
  }
  // The test completes the write in flight.
  void complete() {
    ASSERT_TRUE(writing);
    writing = false;
    written = durable = write_to;
  }
  void send(const Message& m) override { sent.push_back(m); }
  void apply(const Entry& e) override { applied.push_back(e.index); }
  void read_states(const std::vector<raft::ReadState>& rs) override {
    reads.insert(reads.end(), rs.begin(), rs.end());
  }

  bool fail_hard_state = false;
  bool writing = false;
  uint64_t staged = 0, written = 0, durable = 0, write_to = 0;
  int writes = 0;
  std::vector<raft::HardState> saved;
  std::vector<uint64_t> installed, truncated, applied;
  std::vector<Message> sent;
  std::vector<raft::ReadState> reads;
};

raft::Configuration three() {
  raft::Configuration c;
  for (uint64_t i = 1; i <= 3; ++i) c.servers.push_back(raft::Server{i, raft::Suffrage::kVoter, ""});
  return c;
}

raft::Config cfg(uint64_t id) {
  raft::Config c;
  c.id = id;
  c.seed = id;
  return c;
}

// An append from leader 1 (term 2) to follower 2 carrying entries (from, to].
Message append_from_leader(uint64_t prev, uint64_t last, uint64_t commit) {
  Message m;
  m.type = MessageType::kAppend;
  m.from = 1;
  m.to = 2;
  m.term = 2;
  m.index = prev;
  m.log_term = prev <= 1 ? 1 : 2;
  m.commit = commit;
  for (uint64_t i = prev + 1; i <= last; ++i) m.entries.push_back(Entry{2, i, raft::EntryType::kNormal, "x"});
  return m;
}

bool has_ack(const std::vector<Message>& sent, uint64_t index) {
  for (const Message& m : sent)
    if (m.type == MessageType::kAppendResp && !m.reject && m.index >= index) return true;
  return false;
}

// Node 2 of three, following leader 1, with the pipeline over a FakeLog.
struct Follower {
  explicit Follower(PipelineOptions po = {}) : node(cfg(2), raft::bootstrap(three())), p(node, log, log, po) {
    p.pump();
  }
  // The leader's append of (prev, last] with its commit index; then a pump.
  void deliver(uint64_t prev, uint64_t last, uint64_t commit) { deliver(append_from_leader(prev, last, commit)); }
  void deliver(const Message& m) {
    node.step(m);
    p.pump();
  }
  // The write in flight completes; then a pump.
  void durable() {
    log.complete();
    p.pump();
  }
  raft::Node node;
  FakeLog log;
  ReadyPipeline p;
};

TEST(ReadyPipeline, AFollowerAcksOnlyOnceTheWriteIsDurable) {
  Follower f;
  f.deliver(1, 3, 1);
  EXPECT_EQ(f.log.writes, 1);
  EXPECT_FALSE(has_ack(f.log.sent, 3)) << "an ack left before its entries were durable";
  EXPECT_EQ(f.p.size(), 1u);
  f.durable();
  EXPECT_TRUE(has_ack(f.log.sent, 3));
  EXPECT_TRUE(f.p.empty());
}

TEST(ReadyPipeline, WritesGroupWhileOneIsInFlight) {
  Follower f;
  f.deliver(1, 2, 1);
  f.deliver(2, 3, 1);
  f.deliver(3, 4, 1);
  EXPECT_EQ(f.log.writes, 1) << "one write in flight at a time";
  f.durable();
  EXPECT_EQ(f.log.writes, 2) << "the second write carries both later Readys";
  EXPECT_EQ(f.log.write_to, 4u);
  EXPECT_TRUE(has_ack(f.log.sent, 2));
  EXPECT_FALSE(has_ack(f.log.sent, 3));
  f.durable();
  EXPECT_TRUE(has_ack(f.log.sent, 4));
}

TEST(ReadyPipeline, CommittedEntriesApplyEarlyOnceAndInOrder) {
  Follower f;
  f.deliver(1, 3, 1);
  f.durable();
  // The leader says 3 is committed and sends 4..5: 2..3 apply at once (durable on a quorum),
  // before the write of 4..5 completes.
  f.deliver(3, 5, 3);
  EXPECT_EQ(f.log.applied, (std::vector<uint64_t>{1, 2, 3}));
  f.log.complete();
  f.deliver(5, 5, 5);
  EXPECT_EQ(f.log.applied, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
}

TEST(ReadyPipeline, WithoutEarlyApplyEntriesWaitForTheirRelease) {
  PipelineOptions po;
  po.early_apply = false;
  Follower f(po);
  f.deliver(1, 3, 1);
  f.durable();
  f.deliver(3, 5, 3);
  EXPECT_EQ(f.log.applied, (std::vector<uint64_t>{1})) << "2..3 came with a Ready still being written";
  f.durable();
  EXPECT_EQ(f.log.applied, (std::vector<uint64_t>{1, 2, 3}));
}

TEST(ReadyPipeline, AFailedHardStateSaveHoldsEverythingAndIsRetried) {
  Follower f;
  f.log.fail_hard_state = true;  // a full disk
  f.deliver(1, 3, 1);            // a new term: the hard state must be saved first
  EXPECT_TRUE(f.p.stuck());
  EXPECT_EQ(f.log.writes, 0) << "nothing of a Ready whose hard state is not saved is written";
  EXPECT_FALSE(has_ack(f.log.sent, 3));
  f.log.fail_hard_state = false;
  f.p.pump();
  EXPECT_FALSE(f.p.stuck());
  ASSERT_FALSE(f.log.saved.empty());
  EXPECT_EQ(f.log.saved.back().term, 2u);
  f.durable();
  EXPECT_TRUE(has_ack(f.log.sent, 3));
}

TEST(ReadyPipeline, ATruncationWaitsForTheWriteInFlight) {
  Follower f;
  f.deliver(1, 4, 1);
  f.durable();
  f.deliver(4, 6, 1);  // 5..6 in flight
  ASSERT_TRUE(f.log.writing);
  // A leader of term 3 replaces 4.. with its own entries.
  Message m = append_from_leader(3, 5, 1);
  m.term = 3;
  for (Entry& e : m.entries) e.term = 3;
  f.deliver(m);
  EXPECT_TRUE(f.log.truncated.empty()) << "a truncation ran under a write in flight";
  f.durable();
  ASSERT_EQ(f.log.truncated.size(), 1u);
  EXPECT_EQ(f.log.truncated[0], 4u);
  f.durable();
  EXPECT_TRUE(f.p.empty());
}

// A single node campaigns and leads, its writes completed as they start.
void lead_alone(raft::Node& node, FakeLog& log, ReadyPipeline& p) {
  node.campaign();
  p.pump();
  log.complete();
  p.pump();
  if (log.writing) log.complete();
  p.pump();
  ASSERT_EQ(node.role(), raft::Role::kLeader);
}

TEST(ReadyPipeline, ASingleNodeCommitsAfterItsOwnWrite) {
  raft::Node node(cfg(1), raft::bootstrap_single(1, ""));
  FakeLog log;
  ReadyPipeline p(node, log, log);
  lead_alone(node, log, p);
  auto r = node.propose("t");
  ASSERT_TRUE(r.ok());
  p.pump();
  if (log.writing) log.complete();
  p.pump();
  if (log.writing) log.complete();
  p.pump();
  ASSERT_FALSE(log.applied.empty());
  EXPECT_EQ(log.applied.back(), r.index);
  for (size_t i = 1; i < log.applied.size(); ++i) EXPECT_EQ(log.applied[i], log.applied[i - 1] + 1);
}

TEST(ReadyPipeline, ReadStatesReachTheApplicationWithoutAWrite) {
  raft::Node node(cfg(1), raft::bootstrap_single(1, ""));
  FakeLog log;
  ReadyPipeline p(node, log, log);
  lead_alone(node, log, p);
  int writes = log.writes;
  ASSERT_TRUE(node.read_index(42).ok());
  p.pump();
  ASSERT_EQ(log.reads.size(), 1u) << "a cluster of one confirms a read at once";
  EXPECT_EQ(log.reads[0].ctx, 42u);
  EXPECT_TRUE(log.reads[0].ok);
  EXPECT_LE(log.reads[0].index, node.commit_index());
  EXPECT_EQ(log.writes, writes) << "a read writes nothing";
}

}  // namespace
}  // namespace ticketd::driver
