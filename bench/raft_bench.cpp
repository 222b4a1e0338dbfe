// BM_RaftThreeNodeCommit: entries per second through a 3-node raft::Node cluster held in memory
// (instant "disk", instant network): the cost of the consensus core itself, per entry, with
// pipelining and batching as the server drives them (propose a batch, pump Readys).
#include <benchmark/benchmark.h>

#include <deque>
#include <memory>
#include <vector>

#include "ticketd/base/check.h"
#include "ticketd/raft/node.h"

namespace {

using namespace ticketd::raft;

class MemoryCluster {
 public:
  explicit MemoryCluster(int n) {
    Configuration conf;
    for (int i = 1; i <= n; ++i) conf.servers.push_back(Server{uint64_t(i), Suffrage::kVoter, ""});
    for (int i = 1; i <= n; ++i) {
      Config c;
      c.id = uint64_t(i);
      c.seed = 7;
      c.max_msg_bytes = 1 << 20;
      nodes_.push_back(std::make_unique<Node>(c, bootstrap(conf)));
    }
    nodes_[0]->campaign();
    pump();
    TICKETD_CHECK(nodes_[0]->role() == Role::kLeader);
  }

  Node& leader() { return *nodes_[0]; }

  // The application snapshots often; keep every node's in-memory log short.
  void compact() {
    for (auto& n : nodes_) n->compact(n->applied_index(), "counter");
  }

  // Runs every Ready and message to quiescence; returns entries applied on the leader.
  size_t pump() {
    size_t applied = 0;
    bool progress = true;
    while (progress) {
      progress = false;
      for (auto& n : nodes_) {
        while (n->has_ready()) {
          progress = true;
          n->ready(&rd_);
          for (Message& m : rd_.messages) queue_.push_back(std::move(m));
          if (rd_.durable_mark) n->on_persisted(rd_.durable_mark->index, rd_.durable_mark->term);
          for (Message& m : rd_.persist_then_send) queue_.push_back(std::move(m));
          if (n.get() == nodes_[0].get()) applied += rd_.committed_entries.size();
        }
      }
      while (!queue_.empty()) {
        progress = true;
        Message m = std::move(queue_.front());
        queue_.pop_front();
        nodes_[m.to - 1]->step(m);
      }
    }
    return applied;
  }

 private:
  std::vector<std::unique_ptr<Node>> nodes_;
  std::deque<Message> queue_;
  Ready rd_;
};

void BM_RaftThreeNodeCommit(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  MemoryCluster c(3);
  std::string payload(8, '\x01');  // Allocate{n}: 8 bytes little-endian
  uint64_t entries = 0;
  int since_compact = 0;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) TICKETD_CHECK(c.leader().propose(payload).ok());
    entries += c.pump();
    if (++since_compact == 64) {  // the application snapshots often; keep the log short
      since_compact = 0;
      c.compact();
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(entries));
}
BENCHMARK(BM_RaftThreeNodeCommit)->Arg(1)->Arg(16)->Arg(256);

}  // namespace
