#include "simulator.h"

#include <array>
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <sstream>
#include <vector>

#include "ticketd/driver/ready_pipeline.h"
#include "ticketd/raft/node.h"
#include "ticketd/tickets/state_machine.h"
#include "ticketd/tickets/window.h"

namespace ticketd::sim {
namespace testing {
DiskBugs disk_bugs;
}  // namespace testing
namespace {

using raft::Entry;
using raft::EntryType;
using raft::Message;
using raft::Role;

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }  // inclusive
  bool chance(double p) { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0) < p; }

 private:
  uint64_t s_;
};

uint64_t fnv(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  return h;
}

struct Violation {
  std::string what;
};

// What survives a crash: the hard state file, the snapshot file, the log's durable entries.
struct Disk {
  raft::HardState hs;
  std::optional<raft::Snapshot> snap;
  std::vector<Entry> entries;
};

// One log write in flight on the simulated disk: everything staged when it started (group
// commit, as the server's WAL does). Up to disk_writes_max_ are in flight side by side and
// complete in any order (each on its own blocks, as the WAL's); only the prefix of completed
// writes is durable (a completed write behind an incomplete one waits, `done`).
struct DiskWrite {
  uint64_t due = 0;
  bool done = false;
  std::vector<Entry> entries;
};

// A client request: one ticket-state command (the server's tickets::Command), proposed as
// one entry. For an Allocate, floors[i] is the highest ticket of items[i]'s sequence that was
// acknowledged (or promised by a Create/Floor) before the proposal was made: its range must
// be above it.
struct ClientOp {
  uint64_t node = 0;
  uint64_t incarnation = 0;
  uint64_t index = 0;
  uint64_t term = 0;
  tickets::Command cmd;
  std::vector<uint64_t> floors;
  bool liveness = false;
};

class Simulation;

// A node's log storage and application as the server's driver sees them (driver::Storage and
// driver::Application): the simulated disk below, the simulation's network and checks above.
struct SimNode;
class SimDriverHooks final : public driver::Storage, public driver::Application {
 public:
  SimDriverHooks(Simulation& sim, SimNode& n) : sim_(sim), n_(n) {}
  bool save_hard_state(const raft::HardState& hs) override;
  bool idle() const override;
  bool install_snapshot(const raft::Snapshot& s) override;
  void truncate_from(uint64_t index) override;
  void append(const Entry& e) override;
  uint64_t last_index() const override;
  uint64_t durable_index() const override;
  void start_write() override;
  void send(const Message& m) override;
  void apply(const Entry& e) override;
  void read_done(const raft::ReadState& rs) override;

 private:
  Simulation& sim_;
  SimNode& n_;
};

struct SimNode {
  uint64_t id = 0;
  std::unique_ptr<raft::Node> node;  // null while crashed or stopped
  // The server's Ready pipeline over this node's simulated storage (null with node).
  std::unique_ptr<SimDriverHooks> hooks;
  std::unique_ptr<driver::ReadyPipeline> pipeline;
  Disk disk;
  std::vector<Entry> staged;         // appended, not yet written (lost on a crash)
  std::vector<DiskWrite> writing;    // the writes in flight, in order (torn or lost on a crash)
  uint64_t last = 0;                 // the log's view, like the WAL's: last staged index,
  uint64_t durable = 0;              // last durable one (0 after a snapshot install)
  uint64_t incarnation = 0;
  uint64_t restart_at = 0;
  uint64_t paused_until = 0;
  bool stopped = false;  // removed from the cluster and shut down for good
  // state machine: the server's own ticket state machine
  tickets::StateMachine sm;
  uint64_t sm_applied = 0;
  uint64_t seen_commit = 0;
  // Window mode on this node (the server's own tickets::WindowServer), lost on a crash.
  std::unique_ptr<tickets::WindowServer> win = std::make_unique<tickets::WindowServer>();
  // The node's clock: its ticks run at its own rate (rate_ppm of real time, within
  // kClockSkewPpm), so elections, heartbeats and the window rate see skewed time.
  uint64_t rate_ppm = 1'000'000;
  uint64_t clock_acc = 0;  // ppm accumulated toward the next tick
  uint64_t ticks = 0;      // ticks since this incarnation started (its local time)
  // Its monotonic clock, in ppm units (1'000'000 = one tick at rate 1): it runs at rate_ppm
  // even while the node is paused (as the OS clock runs under SIGSTOP), so a node that wakes
  // up sees that its lease ran out although it counted no ticks. last_tick_at: the instant of
  // each of its recent ticks on that clock.
  uint64_t local = 0;
  std::array<uint64_t, 64> tick_at{};  // by raft::Node::now_ticks() % 64: when it ticked
  // Window batches sent while the node was paused: they wait in its socket and are read
  // when it wakes up, before anything from its peers (a stale leader's classic moment).
  std::vector<uint64_t> inbox;
};

// A window-mode batch (TICKET/TICKET.BLOCK of window sequences) submitted to a node that
// believed it led: floors[i] is the highest ticket of items[i]'s sequence acknowledged or
// promised before it was submitted (real-time order: its tickets must be above it).
struct WindowOp {
  uint64_t node = 0;
  uint64_t incarnation = 0;
  std::vector<tickets::Command::Item> items;
  std::vector<uint64_t> floors;
};

// Read contexts of window-mode ReadIndex rounds (the rest are TICKET.LAST reads).
constexpr uint64_t kWindowRoundCtx = uint64_t{1} << 62;
// Each node's clock runs within this much of real time (parts per million).
constexpr uint64_t kClockSkewPpm = 200'000;
// The lease a leader holds after a confirmed round (raft::Config::lease_ticks), for
// election_ticks 10: lease * (1 + skew) <= (election - 1) * (1 - skew) needs <= 6; one spare.
constexpr int kSimLeaseTicks = 5;

// A TICKET.LAST: a linearizable read of one sequence's last value. It must reflect every
// ticket acknowledged (or promised by a Create/Floor) before it was sent: `floor`.
struct PendingRead {
  uint64_t node = 0;
  uint64_t incarnation = 0;
  std::string seq;
  uint64_t floor = 0;
};

struct InFlight {
  uint64_t at;
  uint64_t seq;
  Message m;
  bool operator>(const InFlight& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

struct CommitRecord {
  uint64_t term = 0;
  uint64_t hash = 0;
  uint64_t observed_term = 0;  // term of the node that first saw it committed
  bool set = false;
};

class Simulation {
 public:
  explicit Simulation(const SimOptions& opt)
      : opt_(opt), rng_(opt.seed * 0x2545F4914F6CDD1Dull + 17),
        // From the seed alone (not rng_), so every seed keeps its fault schedule.
        lease_(opt.lease >= 0 ? opt.lease == 1 : (((opt.seed * 0x9E3779B97F4A7C15ull) >> 41) & 1) != 0),
        rounds_bound_(((opt.seed * 0x9E3779B97F4A7C15ull) >> 43) & 1) {
    // Per-seed fault profile: some seeds are calm, some are brutal.
    // A third of the seeds are turbulent: leaders crash soon after they win, restarts are quick,
    // so uncommitted suffixes of many terms pile up (Raft paper Figure 8 territory).
    turbulent_ = rng_.chance(0.35) || opt_.always_turbulent;
    drop_p_ = rng_.chance(0.3) ? 0.0 : static_cast<double>(rng_.below(100)) / 1000.0;
    dup_p_ = rng_.chance(0.5) ? 0.0 : 0.02;
    reorder_p_ = static_cast<double>(rng_.below(30)) / 100.0;
    disk_latency_ = static_cast<int>(rng_.below(3));
    crash_p_ = opt_.crashes ? static_cast<double>(turbulent_ ? rng_.range(1, 3) : rng_.range(1, 6)) / 1000.0 : 0.0;
    partition_p_ = opt_.partitions ? static_cast<double>(rng_.range(1, 6)) / 1000.0 : 0.0;
    member_p_ = opt_.membership ? static_cast<double>(rng_.range(0, 4)) / 1000.0 : 0.0;
    snapshot_p_ = opt_.snapshots ? static_cast<double>(rng_.range(1, 30)) / 1000.0 : 0.0;
    propose_p_ = static_cast<double>(rng_.range(10, 60)) / 100.0;
    static const uint64_t kMsgBytes[] = {48, 96, 256, 4096};
    max_msg_bytes_ = kMsgBytes[rng_.below(4)];
    if (turbulent_ && rng_.chance(0.7)) max_msg_bytes_ = kMsgBytes[0];  // one entry per append
    max_inflight_ = static_cast<int>(rng_.range(1, 4));
    max_nodes_ = std::max(opt_.max_nodes, opt_.nodes);
    apply_early_ = rng_.chance(0.5);
    // Some seeds fill the disk now and then: a term/vote save or a snapshot install fails and
    // the driver retries it on its next pump, acknowledging nothing after it meanwhile.
    hs_full_p_ = rng_.chance(0.2) ? 0.05 : 0.0;
    // Some seeds keep removed servers running for hundreds of ticks: they must neither
    // disrupt the cluster (outsiders may not move anyone's term) nor be left unaware.
    linger_removed_ = opt_.membership && rng_.chance(0.3);
    // Durable log writes side by side (the server's --wal-writes-in-flight): 1..4.
    disk_writes_max_ = static_cast<size_t>(rng_.range(1, 4));
    raft::Configuration conf;
    for (int i = 1; i <= opt_.nodes; ++i)
      conf.servers.push_back(raft::Server{uint64_t(i), raft::Suffrage::kVoter, "n" + std::to_string(i)});
    for (int i = 1; i <= opt_.nodes; ++i) create_node(uint64_t(i), raft::bootstrap(conf));
    next_id_ = uint64_t(opt_.nodes) + 1;
    // Drawn only in this mode, so every other seed keeps its schedule.
    if (opt_.force_new_cluster) force_at_ = rng_.range(uint64_t(opt_.steps) / 5 + 1, uint64_t(opt_.steps) / 2 + 1);
  }

  SimResult run() {
    SimResult res;
    res.seed = opt_.seed;
    res.nodes = opt_.nodes;
    res.steps = opt_.steps;
    if (opt_.always_turbulent) res.replay_flags += " --turbulent";
    if (!opt_.crashes) res.replay_flags += " --no-crashes";
    if (!opt_.partitions) res.replay_flags += " --no-partitions";
    if (!opt_.membership) res.replay_flags += " --no-membership";
    if (!opt_.snapshots) res.replay_flags += " --no-snapshots";
    if (opt_.force_new_cluster) res.replay_flags += " --force-new-cluster";
    if (!opt_.force_floors) res.replay_flags += " --no-floors";
    if (opt_.lease >= 0) res.replay_flags += opt_.lease == 1 ? " --lease on" : " --lease off";
    if (opt_.liveness_ticks != SimOptions{}.liveness_ticks)
      res.replay_flags += " --liveness-ticks " + std::to_string(opt_.liveness_ticks);
    try {
      for (step_ = 0; step_ < opt_.steps; ++step_) {
        faults();
        clients();
        advance();
        check();
      }
      liveness();
    } catch (const Violation& v) {
      res.ok = false;
      res.step = step_;
      res.failure = v.what;
    }
    stats_.elections = leader_of_term_.size();
    stats_.max_commit = committed_.size() ? committed_.size() - 1 : 0;
    res.stats = stats_;
    return res;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    std::ostringstream os;
    os << "t=" << now_ << ": " << what;
    throw Violation{os.str()};
  }

  void trace(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    if (!opt_.trace) return;
    std::fprintf(stderr, "[t=%llu] ", static_cast<unsigned long long>(now_));
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fputc('\n', stderr);
  }

  raft::Config node_config(uint64_t id, uint64_t incarnation) {
    raft::Config c;
    c.id = id;
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.max_inflight_msgs = max_inflight_;
    c.max_msg_bytes = max_msg_bytes_;  // often small, so batches split (and acks land mid-batch)
    c.seed = opt_.seed * 1000003 + id * 101 + incarnation;
    c.lease_ticks = lease_ ? kSimLeaseTicks : 0;
    c.guard_votes_after_start = true;  // as the server sets it
    return c;
  }

  void create_node(uint64_t id, raft::InitialState st) {
    SimNode& n = nodes_[id];
    n.id = id;
    n.disk.hs = st.hard_state;
    n.disk.snap = st.snapshot;
    n.disk.entries = st.entries;
    n.node = std::make_unique<raft::Node>(node_config(id, 0), std::move(st));
    n.tick_at[0] = n.local;  // tick number 0: the start
    n.rate_ppm = clock_rng_.range(1'000'000 - kClockSkewPpm, 1'000'000 + kClockSkewPpm);
    attach_driver(n);
    n.sm = tickets::StateMachine();
    n.sm_applied = n.node->applied_index();
    n.seen_commit = n.node->commit_index();
  }

  void attach_driver(SimNode& n) {
    n.staged.clear();
    n.writing.clear();
    n.last = n.durable = n.disk.entries.empty() ? 0 : n.disk.entries.back().index;
    n.hooks = std::make_unique<SimDriverHooks>(*this, n);
    driver::PipelineOptions po;
    po.early_apply = apply_early_;
    n.pipeline = std::make_unique<driver::ReadyPipeline>(*n.node, *n.hooks, *n.hooks, po);
  }

  void shut_down(SimNode& n) {
    n.win = std::make_unique<tickets::WindowServer>();  // windows live in memory only
    n.ticks = 0;
    n.inbox.clear();
    std::erase_if(window_ops_, [&](const auto& kv) { return kv.second.node == n.id; });  // never answered
    n.pipeline.reset();
    n.hooks.reset();
    n.node.reset();
    n.staged.clear();
    n.writing.clear();
  }

  std::vector<uint64_t> live_ids() const {
    std::vector<uint64_t> out;
    for (const auto& [id, n] : nodes_)
      if (n.node) out.push_back(id);
    return out;
  }

  SimNode* leader() {
    SimNode* best = nullptr;
    for (auto& [id, n] : nodes_) {
      if (!n.node || n.node->role() != Role::kLeader || now_ < n.paused_until) continue;
      if (!best || n.node->term() > best->node->term()) best = &n;
    }
    return best;
  }

  // ---------------------------------------------------------------------------------------
  // faults

  void faults() {
    // restarts, heals, stops
    for (auto& [id, n] : nodes_) {
      if (!n.node && !n.stopped && n.restart_at != 0 && now_ >= n.restart_at) restart(n);
    }
    if (heal_at_ != 0 && now_ >= heal_at_) {
      blocked_.clear();
      heal_at_ = 0;
      trace("heal");
    }
    for (auto it = stop_at_.begin(); it != stop_at_.end();) {
      if (now_ >= it->second) {
        SimNode& n = nodes_[it->first];
        trace("stop removed node %llu", static_cast<unsigned long long>(n.id));
        if (n.node && n.node->removal_notice()) ++stats_.removed_aware;
        shut_down(n);
        n.stopped = true;
        it = stop_at_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = crash_soon_.begin(); it != crash_soon_.end();) {
      if (now_ >= it->second) {
        SimNode& n = nodes_[it->first];
        if (n.node) crash(n);
        it = crash_soon_.erase(it);
      } else {
        ++it;
      }
    }
    if (force_at_ != 0 && now_ == force_at_) lose_majority_and_force();
    if (forced_) grow_back();
    std::vector<uint64_t> live = live_ids();
    if (live.empty()) return;
    if (rng_.chance(crash_p_)) {
      // Keep at most a minority of the initial cluster down at once, most of the time; some
      // seeds still see a whole-cluster outage (every node crashed) now and then.
      size_t down = 0;
      for (auto& [id, n] : nodes_) down += !n.node && !n.stopped;
      if (down < live.size() || rng_.chance(0.1)) {
        // Half the crashes hit the leader: that is where uncommitted suffixes diverge.
        SimNode* l = rng_.chance(0.5) ? leader() : nullptr;
        crash(l ? *l : nodes_[live[rng_.below(live.size())]]);
      }
    }
    if (heal_at_ == 0 && rng_.chance(partition_p_)) partition(live);
    if (rng_.chance(crash_p_ / 2)) {
      SimNode& n = nodes_[live[rng_.below(live.size())]];
      n.paused_until = now_ + rng_.range(5, 40);
      trace("pause %llu", static_cast<unsigned long long>(n.id));
    }
    if (clock_rng_.chance(crash_p_ / 2)) {
      // A pause of the leader longer than an election timeout (a GC or VM stall, SIGSTOP):
      // it wakes up believing it leads, with client requests waiting in its socket.
      if (SimNode* l = leader()) {
        l->paused_until = now_ + clock_rng_.range(15, 60);
        trace("pause leader %llu until %llu", (unsigned long long)l->id, (unsigned long long)l->paused_until);
      }
    }
    if (rng_.chance(member_p_)) membership();
    if (rng_.chance(snapshot_p_ * live.size())) {
      SimNode& n = nodes_[live[rng_.below(live.size())]];
      take_snapshot(n);
    }
    if (rng_.chance(0.002)) {
      // Leadership transfer to a random voter.
      if (SimNode* l = leader()) {
        const auto& conf = l->node->configuration();
        if (!conf.servers.empty()) {
          uint64_t target = conf.servers[rng_.below(conf.servers.size())].id;
          if (l->node->transfer_leadership(target)) trace("transfer %llu -> %llu", (unsigned long long)l->id, (unsigned long long)target);
          drain(*l);
        }
      }
    }
  }

  void partition(const std::vector<uint64_t>& live) {
    std::vector<uint64_t> all;
    for (auto& [id, n] : nodes_)
      if (!n.stopped) all.push_back(id);
    int kind = static_cast<int>(rng_.below(3));
    if (kind == 0) {  // isolate one node
      uint64_t x = live[rng_.below(live.size())];
      for (uint64_t o : all)
        if (o != x) blocked_.insert({x, o}), blocked_.insert({o, x});
    } else if (kind == 1) {  // random split in two
      std::set<uint64_t> side;
      for (uint64_t o : all)
        if (rng_.chance(0.5)) side.insert(o);
      for (uint64_t a : all)
        for (uint64_t b : all)
          if (side.count(a) != side.count(b)) blocked_.insert({a, b});
    } else {  // one-way cuts
      int cuts = static_cast<int>(rng_.range(1, 4));
      for (int i = 0; i < cuts; ++i) {
        uint64_t a = all[rng_.below(all.size())], b = all[rng_.below(all.size())];
        if (a != b) blocked_.insert({a, b});
      }
    }
    heal_at_ = now_ + rng_.range(10, 150);
    ++stats_.partitions;
    trace("partition kind %d until %llu", kind, static_cast<unsigned long long>(heal_at_));
  }

  void crash(SimNode& n) {
    ++stats_.crashes;
    trace("crash %llu (%zu staged, writes in flight %zu)", static_cast<unsigned long long>(n.id), n.staged.size(),
          n.writing.size());
    // What was staged is lost. Of the writes in flight any subset lands, each whole or torn
    // (a prefix of its entries); completed ones (behind an incomplete one) have landed. The
    // WAL's recovery keeps the writes up to the first that did not land whole (with the torn
    // one's prefix) and discards every later one, landed or not.
    for (DiskWrite& w : n.writing) {
      int fate = w.done ? 0 : static_cast<int>(rng_.below(3));  // 0 whole, 1 torn, 2 lost
      if (fate == 1) w.entries.resize(rng_.below(w.entries.size() + 1));
      if (fate != 2) write_to_disk(n, w.entries);
      if (fate != 0) break;
    }
    shut_down(n);
    std::erase_if(reads_, [&](const auto& kv) { return kv.second.node == n.id; });  // never answered
    n.restart_at = now_ + (rng_.chance(0.5) ? rng_.range(1, turbulent_ ? 4 : 12) : rng_.range(5, 80));
    n.paused_until = 0;
  }

  void restart(SimNode& n) {
    ++n.incarnation;
    raft::InitialState st{n.disk.hs, n.disk.snap, n.disk.entries};
    n.node = std::make_unique<raft::Node>(node_config(n.id, n.incarnation), std::move(st));
    n.tick_at[0] = n.local;  // tick number 0: the start
    attach_driver(n);
    n.sm = tickets::StateMachine();
    if (n.disk.snap) restore(n, *n.disk.snap);
    n.sm_applied = n.node->applied_index();
    n.seen_commit = n.node->commit_index();
    n.restart_at = 0;
    trace("restart %llu at term %llu last %llu commit %llu", (unsigned long long)n.id,
          (unsigned long long)n.node->term(), (unsigned long long)n.node->last_index(),
          (unsigned long long)n.node->commit_index());
  }

  // ---------------------------------------------------------------------------------------
  // recovery from a lost majority

  void lose_majority_and_force() {
    // The survivor: the leader half the time (it acknowledged the latest tickets), else any
    // node still in its own latest configuration (what its disk says).
    std::vector<uint64_t> members;
    for (auto& [id, n] : nodes_) {
      if (n.stopped) continue;
      raft::InitialState st{n.disk.hs, n.disk.snap, n.disk.entries};
      if (raft::latest_configuration(st).find(id)) members.push_back(id);
    }
    if (members.empty()) return;
    SimNode* l = leader();
    uint64_t sid = l && std::find(members.begin(), members.end(), l->id) != members.end() && rng_.chance(0.5)
                       ? l->id
                       : members[rng_.below(members.size())];
    SimNode& s = nodes_[sid];
    // The whole cluster went down (power loss): the survivor's write in flight may be torn.
    if (s.node) crash(s);
    for (auto& [id, n] : nodes_) {
      if (id == sid || n.stopped) continue;
      shut_down(n);
      n.stopped = true;
    }
    stop_at_.clear();
    crash_soon_.clear();
    blocked_.clear();
    heal_at_ = 0;
    std::erase_if(ops_, [&](const ClientOp& op) { return op.node != sid; });
    std::erase_if(reads_, [&](const auto& kv) { return kv.second.node != sid; });
    net_ = {};  // every process is down: what was in flight is gone with the sockets

    // The floors an operator gives: every ticket (or promise) acknowledged by another node, or
    // by the survivor from an entry that is not on its disk (applied early, write torn).
    std::map<std::string, uint64_t> floor;
    for (const AckRecord& a : ack_log_) {
      if (!a.window && a.node == sid && on_disk(s, a.index, a.term)) continue;
      uint64_t& f = floor[a.seq];
      f = std::max(f, a.last);
    }
    std::vector<std::string> payloads;
    for (const auto& [seq, f] : floor) {
      if (f == 0 || !opt_.force_floors) continue;
      payloads.push_back(tickets::encode(tickets::Command::create(seq, f + 1)));  // if it is missing
      payloads.push_back(tickets::encode(tickets::Command::floor(seq, f)));
      ++stats_.floors;
    }
    raft::InitialState st{s.disk.hs, s.disk.snap, s.disk.entries};
    raft::Configuration c = raft::latest_configuration(st);
    std::string err = raft::force_new_cluster(&st, sid, c.find(sid)->context, payloads);
    if (!err.empty()) fail("force_new_cluster refused node " + std::to_string(sid) + ": " + err);
    s.disk.entries = st.entries;
    s.disk.hs = raft::HardState{st.hard_state.term, st.hard_state.vote, 0};  // as the server saves it
    // A new history begins: Raft's own records of the old one no longer bind it.
    committed_.clear();
    state_hash_.clear();
    entries_.clear();
    leader_of_term_.clear();
    removals_.clear();
    forced_ = true;
    ++stats_.forced;
    trace("lost majority: node %llu forced a new cluster with %zu floors", (unsigned long long)sid, payloads.size() / 2);
    restart(s);
  }

  bool on_disk(const SimNode& n, uint64_t index, uint64_t term) const {
    if (n.disk.snap && n.disk.snap->index >= index) return true;  // a committed entry it covers
    for (const Entry& e : n.disk.entries)
      if (e.index == index) return e.term == term;
    return false;
  }

  // After the rewrite: add members back (as an operator does) until there are as many as before.
  void grow_back() {
    SimNode* l = leader();
    if (!l || l->node->conf_change_pending()) return;
    if (l->node->configuration().servers.size() >= static_cast<size_t>(std::max(opt_.nodes, 3))) return;
    add_member(*l);
  }

  void add_member(SimNode& l) {
    raft::ConfChangeRequest req;
    req.kind = raft::ConfChangeRequest::Kind::kAddNonVoter;
    req.id = next_id_;
    req.context = "n" + std::to_string(next_id_);
    auto r = l.node->propose_conf_change(req);
    if (!r.ok()) return;
    ++stats_.conf_changes;
    trace("add %llu via %llu at %llu", (unsigned long long)req.id, (unsigned long long)l.id, (unsigned long long)r.index);
    ++next_id_;
    create_node(req.id, raft::InitialState{});  // a --join node: empty state
    drain(l);
  }

  void membership() {
    SimNode* l = leader();
    if (!l) return;
    const raft::Configuration& conf = l->node->configuration();
    bool add = conf.servers.size() < static_cast<size_t>(max_nodes_) && rng_.chance(0.5);
    if (conf.servers.size() <= 1) add = true;
    if (add) {
      if (conf.servers.size() >= static_cast<size_t>(max_nodes_)) return;
      add_member(*l);
    } else {
      const raft::Server& victim = conf.servers[rng_.below(conf.servers.size())];
      raft::ConfChangeRequest req;
      req.kind = raft::ConfChangeRequest::Kind::kRemove;
      req.id = victim.id;
      auto r = l->node->propose_conf_change(req);
      if (!r.ok()) return;
      ++stats_.conf_changes;
      trace("remove %llu via %llu at %llu", (unsigned long long)req.id, (unsigned long long)l->id, (unsigned long long)r.index);
      removals_.push_back({req.id, r.index, r.term});
      drain(*l);
    }
  }

  void take_snapshot(SimNode& n) {
    if (!n.node || n.sm_applied <= n.node->snapshot_index()) return;
    // Like the server: only a state whose entries are durable here too (the log below a
    // snapshot is dropped), and never over an installed snapshot that is newer.
    if (n.sm_applied > n.durable || n.sm_applied <= (n.disk.snap ? n.disk.snap->index : 0)) return;
    uint64_t at = n.sm_applied;
    n.node->compact(at, n.sm.encode_snapshot());
    const raft::Snapshot* s = n.node->snapshot();
    if (!s || s->index != at) return;
    // The application's snapshot is durable before compact() (we write it "synchronously").
    n.disk.snap = *s;
    std::erase_if(n.disk.entries, [&](const Entry& e) { return e.index <= at; });
    ++stats_.snapshots_taken;
    trace("snapshot %llu at %llu", (unsigned long long)n.id, (unsigned long long)at);
  }

  // ---------------------------------------------------------------------------------------
  // clients

  void clients() {
    if (!rng_.chance(propose_p_)) return;
    std::vector<uint64_t> live = live_ids();
    if (live.empty()) return;
    // Clients mostly find the leader (as after a MOVED redirect), sometimes hit anyone.
    SimNode* target = leader();
    if (!target || rng_.chance(0.2)) target = &nodes_[live[rng_.below(live.size())]];
    propose(*target, random_command(rng_.range(1, 5)), false);
    // Window-mode batches: mostly at the leader, sometimes at any node that believes it leads
    // (a deposed leader, paused or cut off, that has not heard of its successor).
    if (client_rng_.chance(0.5)) {
      SimNode* w = leader();
      if (!w || client_rng_.chance(0.3)) w = &nodes_[live[client_rng_.below(live.size())]];
      // Clients that have not heard of a new leader keep sending to the paused one.
      for (auto& [id, p] : nodes_) {
        if (p.node && now_ < p.paused_until && p.node->role() == Role::kLeader && client_rng_.chance(0.3)) w = &p;
      }
      if (w->node && w->node->role() == Role::kLeader) window_submit(*w);  // paused: queued
    }
    // Now and then a TICKET.LAST at the node a client believes leads (the true leader, or a
    // deposed one still thinking it leads).
    if (client_rng_.chance(0.3)) {
      SimNode* r = &nodes_[live[client_rng_.below(live.size())]];
      if (r->node && now_ >= r->paused_until && r->node->role() == Role::kLeader) read(*r);
    }
  }

  void read(SimNode& n) {
    static const char* const kNames[] = {"default", "orders", "users"};
    std::string seq = kNames[client_rng_.below(3)];
    uint64_t ctx = next_read_++;
    if (!n.node->read_index(ctx).ok()) return;
    reads_[ctx] = PendingRead{n.id, n.incarnation, seq, max_acked(seq)};
    ++stats_.reads;
    drain(n);
  }

  // Mostly Allocates over one to three of a few sequences (one may not exist yet: refused,
  // never started at 1), sometimes a Create or a Floor. Drawn from a generator of its own,
  // so the fault schedule of a seed does not depend on what the clients ask.
  tickets::Command random_command(uint64_t count) {
    static const char* const kNames[] = {"default", "orders", "users"};
    auto name = [&] { return std::string(kNames[client_rng_.below(3)]); };
    uint64_t roll = client_rng_.below(100);
    static const char* const kWindowNames[] = {"win", "wide"};
    auto window_name = [&] { return std::string(kWindowNames[client_rng_.below(2)]); };
    if (roll < 4) {
      // Window sequences with small windows, so reservations come often.
      if (client_rng_.chance(0.4))
        return tickets::Command::create_window(window_name(), client_rng_.range(1, 1000), client_rng_.range(1, 8));
      return tickets::Command::create(name(), client_rng_.range(1, 1000));
    }
    if (roll < 7) {
      std::string n = client_rng_.chance(0.3) ? window_name() : name();
      return tickets::Command::floor(n, max_acked(n) + client_rng_.range(0, 50));
    }
    std::vector<tickets::Command::Item> items{{"default", count}};
    if (roll < 60) {
      items.clear();
      // Now and then a dense Allocate of a window sequence too (a batch routed while the
      // sequence was dense): it claims above the leader's windows, which must end there.
      for (uint64_t k = client_rng_.range(1, 3); k > 0; --k)
        items.push_back({client_rng_.chance(0.05) ? window_name() : name(), client_rng_.range(1, 5)});
    }
    return tickets::Command::allocate(std::move(items));
  }

  uint64_t max_acked(const std::string& seq) const {
    auto it = max_acked_end_.find(seq);
    return it == max_acked_end_.end() ? 0 : it->second;
  }

  bool propose(SimNode& n, tickets::Command cmd, bool liveness) {
    if (!n.node || now_ < n.paused_until) return false;
    // Client back-pressure (as the server's batching gives): without it an overloaded leader
    // with a tiny window piles up an unbounded backlog and no liveness bound can hold.
    if (!liveness && n.node->last_index() > n.node->commit_index() + backlog_limit_) return false;
    ++stats_.proposals;
    auto r = n.node->propose(tickets::encode(cmd));
    if (!r.ok()) return false;
    ClientOp op{n.id, n.incarnation, r.index, r.term, std::move(cmd), {}, liveness};
    for (const auto& it : op.cmd.items) op.floors.push_back(max_acked(it.name));
    ops_.push_back(std::move(op));
    drain(n);
    return true;
  }

  // ---------------------------------------------------------------------------------------
  // time, network, disk

  void advance() {
    ++now_;
    for (auto& [id, n] : nodes_) {
      uint64_t local0 = n.local;
      n.local += n.rate_ppm;  // its clock runs on while it is paused
      if (!n.node || now_ < n.paused_until) continue;
      window_read_inbox(n);
      // A little clock drift: a node occasionally misses a tick; and each node's clock runs at
      // its own rate (within kClockSkewPpm), so some tick twice in a step now and then.
      bool miss = rng_.chance(0.03);
      // The instant (on its clock) each tick of this step happens: ticks are one tick length
      // apart or more, as a timer that is re-armed after each tick fires.
      uint64_t at = local0 + (1'000'000 - n.clock_acc);
      n.clock_acc += n.rate_ppm;
      while (n.clock_acc >= 1'000'000 && n.node) {
        n.clock_acc -= 1'000'000;
        uint64_t tick_at = at;
        at += 1'000'000;
        if (miss) continue;
        n.node->tick();
        ++n.ticks;
        n.tick_at[n.node->now_ticks() % n.tick_at.size()] = tick_at;
      }
      if (!n.node) continue;
      drain(n);
      window_pump(n);
    }
    while (!net_.empty() && net_.top().at <= now_) {
      InFlight f = net_.top();
      net_.pop();
      auto it = nodes_.find(f.m.to);
      if (it == nodes_.end() || !it->second.node) continue;
      SimNode& n = it->second;
      if (now_ < n.paused_until) {
        f.at = n.paused_until;  // a paused process reads its socket later
        net_.push(std::move(f));
        continue;
      }
      if (blocked_.count({f.m.from, f.m.to})) {
        ++stats_.messages_dropped;
        continue;
      }
      if (opt_.trace) {
        trace("deliver %s %llu->%llu term %llu index %llu log_term %llu entries %zu commit %llu reject %d hint %llu/%llu",
              raft::to_string(f.m.type), (unsigned long long)f.m.from, (unsigned long long)f.m.to,
              (unsigned long long)f.m.term, (unsigned long long)f.m.index, (unsigned long long)f.m.log_term,
              f.m.entries.size(), (unsigned long long)f.m.commit, f.m.reject ? 1 : 0,
              (unsigned long long)f.m.hint_index, (unsigned long long)f.m.hint_term);
      }
      raft::StepResult sr = n.node->step(f.m);
      // Every sender here is a correct raft::Node: a refusal other than "outsider" (a removed
      // server) means validation rejects legitimate traffic.
      if (sr.status == raft::StepStatus::kMalformed || sr.status == raft::StepStatus::kConflict) {
        fail("node " + std::to_string(n.id) + " refused " + raft::to_string(f.m.type) + " from " +
             std::to_string(f.m.from) + " as " + raft::to_string(sr.status) + ": " + sr.why);
      }
      drain(n);
    }
    for (auto& [id, n] : nodes_) {
      if (!n.node) continue;
      // Due writes complete in a random order: out of order whenever more than one is due.
      // (Tokens, not positions: a completion removes the completed prefix.)
      std::vector<uint64_t> due;
      for (const DiskWrite& w : n.writing) {
        if (!w.done && w.due <= now_) due.push_back(w.entries.back().index);
      }
      for (size_t i = due.size(); i > 1; --i) std::swap(due[i - 1], due[rng_.below(i)]);
      for (uint64_t token : due) {
        // A completion may crash the node or reset its storage (drain): then the rest is moot.
        if (!n.node) break;
        if (!has_write(n, token)) continue;
        complete_write(n, token);
      }
    }
  }

  void send(const Message& m) {
    ++stats_.messages_sent;
    // Turbulent seeds also play an adversarial network: appends carrying the sender's
    // current-term entries (a new leader's no-op) get lost more often than catch-up traffic.
    bool adversarial = turbulent_ && m.type == raft::MessageType::kAppend && !m.entries.empty() &&
                       m.entries.back().term == m.term && rng_.chance(0.6);
    if (blocked_.count({m.from, m.to}) || adversarial || rng_.chance(drop_p_)) {
      ++stats_.messages_dropped;
      return;
    }
    uint64_t delay = turbulent_ ? rng_.range(1, 3) : 1;
    if (rng_.chance(reorder_p_)) delay += rng_.range(1, 4);
    if (rng_.chance(0.005)) delay += rng_.range(10, 40);
    net_.push(InFlight{now_ + delay, seq_++, m});
    if (rng_.chance(dup_p_)) net_.push(InFlight{now_ + delay + rng_.range(0, 5), seq_++, m});
  }

  // ---- window mode, driven as the server's ticket log drives it: once per loop turn, the
  // role into the WindowServer, its reservations proposed, one ReadIndex round started for
  // every batch that arrived since the last, and what it released answered and checked.
  void window_pump(SimNode& n) {
    if (!n.node || now_ < n.paused_until) return;
    tickets::WindowServer& w = *n.win;
    w.set_max_rounds_in_flight(rounds_bound_);  // the server's kWindowRoundsInFlight, or none
    w.set_leader(n.node->role() == Role::kLeader ? n.node->term() : 0);
    bool changed = false;
    for (const tickets::Command& c : w.reservations(n.sm, n.ticks * 10)) {  // its own clock, in ms
      raft::ProposeResult r = n.node->propose(tickets::encode(c));
      if (!r.ok()) break;
      ++stats_.reservations;
      w.proposed(c, r.index, r.term, n.sm);
      changed = true;
    }
    // --lease: a lease that holds on the node's own clock stands for the round (checked at
    // the end of the step, after anything it did in it).
    raft::Lease lease = n.node->lease();
    if (lease_ && raft::lease_holds(lease, n.tick_at[lease.from_tick % n.tick_at.size()], n.local, 1'000'000)) {
      size_t before = w.waiting();
      w.lease_confirms();
      stats_.lease_releases += before - w.waiting();
    } else if (std::optional<uint64_t> round = w.round_to_start()) {
      if (!n.node->read_index(kWindowRoundCtx | *round).ok()) w.round_done(*round, false);
      changed = true;
    }
    if (changed) drain(n);
    for (tickets::WindowRelease& rel : w.take_released()) window_answer(n, rel);
  }

  void window_submit(SimNode& n) {
    static const char* const kWindowNames[] = {"win", "wide"};
    std::vector<tickets::Command::Item> items;
    for (uint64_t k = client_rng_.range(1, 2); k > 0; --k)
      items.push_back({kWindowNames[client_rng_.below(2)], client_rng_.range(1, 5)});
    WindowOp op{n.id, n.incarnation, items, {}};
    for (const auto& it : items) op.floors.push_back(max_acked(it.name));
    uint64_t id = next_window_op_++;
    window_ops_[id] = std::move(op);
    ++stats_.window_batches;
    if (now_ < n.paused_until) {
      n.inbox.push_back(id);
      return;
    }
    n.win->set_leader(n.node->role() == Role::kLeader ? n.node->term() : 0);
    n.win->submit(id, std::move(items), n.sm);
    window_pump(n);
  }

  void window_read_inbox(SimNode& n) {
    if (n.inbox.empty()) return;
    n.win->set_leader(n.node->role() == Role::kLeader ? n.node->term() : 0);
    for (uint64_t id : n.inbox) n.win->submit(id, window_ops_.at(id).items, n.sm);
    n.inbox.clear();
  }

  // A released window batch: its tickets must be unique in their sequence and above every
  // ticket acknowledged (or promised) before the batch was submitted, whichever node served
  // those: across leader changes, crashes, partitions, pauses and skewed clocks.
  void window_answer(SimNode& n, tickets::WindowRelease& rel) {
    auto it = window_ops_.find(rel.id);
    if (it == window_ops_.end()) fail("node " + std::to_string(n.id) + " released an unknown window batch");
    WindowOp op = std::move(it->second);
    window_ops_.erase(it);
    if (op.node != n.id || op.incarnation != n.incarnation) fail("a window batch released by another node or incarnation");
    if (!rel.ok) {  // leadership lost: the client gets an error and retries
      trace("window node %llu batch %llu failed", (unsigned long long)n.id, (unsigned long long)rel.id);
      return;
    }
    if (rel.items.size() != op.items.size()) fail("a window batch released with the wrong number of items");
    ++stats_.window_released;
    for (size_t i = 0; i < op.items.size(); ++i) {
      if (rel.items[i].status != tickets::Status::kOk) continue;  // no such sequence (yet)
      const tickets::Command::Item& item = op.items[i];
      trace("window node %llu %s [%llu,%llu]", (unsigned long long)n.id, item.name.c_str(),
            (unsigned long long)rel.items[i].first, (unsigned long long)(rel.items[i].first + item.n - 1));
      stats_.window_tickets += item.n;
      ack(item.name, rel.items[i].first, rel.items[i].first + item.n - 1, op.floors[i]);
      // The operator's floors after a lost majority cover window tickets too (the survivor's
      // own among them: the reservation they came from may be missing from its disk).
      if (opt_.force_new_cluster)
        ack_log_.push_back({n.id, 0, 0, item.name, rel.items[i].first + item.n - 1, true});
    }
  }

  // Everything the node hands out goes through the server's own Ready pipeline.
  void drain(SimNode& n) {
    if (!n.node) return;
    n.pipeline->pump();
    if (n.node && n.node->has_ready()) fail("the driver left a Ready behind on node " + std::to_string(n.id));
  }

 public:
  // ---- driver::Storage and driver::Application for one node (SimDriverHooks forwards here)

  bool save_hard_state(SimNode& n, const raft::HardState& hs) {
    if (hs_full_p_ > 0 && rng_.chance(hs_full_p_)) return false;  // a full disk: retried
    if (hs.term != n.disk.hs.term || hs.vote != n.disk.hs.vote) {
      // The server's hard state file: term and vote only, synced at once, commit 0 (a hint
      // relearned after a restart).
      n.disk.hs = raft::HardState{hs.term, hs.vote, 0};
    }
    return true;
  }

  bool idle(const SimNode& n) const { return n.writing.empty() && n.staged.empty(); }

  bool install_snapshot(SimNode& n, const raft::Snapshot& snap) {
    if (hs_full_p_ > 0 && rng_.chance(hs_full_p_)) return false;
    n.disk.snap = snap;
    n.disk.entries.clear();
    n.last = n.durable = 0;  // the log restarts after the snapshot, as the WAL's does
    restore(n, snap);
    n.sm_applied = snap.index;
    ++stats_.snapshots_installed;
    trace("install snapshot %llu at %llu", (unsigned long long)n.id, (unsigned long long)snap.index);
    return true;
  }

  void truncate_from(SimNode& n, uint64_t index) {
    while (!n.disk.entries.empty() && n.disk.entries.back().index >= index) n.disk.entries.pop_back();
    n.last = std::min(n.last, index - 1);
    n.durable = std::min(n.durable, index - 1);
  }

  void append(SimNode& n, const Entry& e) {
    check_new_entry(n, e);
    n.staged.push_back(e);
    n.last = e.index;
  }

  void start_write(SimNode& n) {
    if (n.writing.size() >= disk_writes_max_ || n.staged.empty()) return;
    DiskWrite w;
    w.due = now_ + static_cast<uint64_t>(rng_.below(disk_latency_ + 1));
    w.entries.swap(n.staged);
    n.writing.push_back(std::move(w));
  }

  void send_from(SimNode& n, const Message& m) {
    if (turbulent_ && crash_p_ > 0 && !crash_soon_.count(n.id)) crash_at_interesting_points(n, m);
    send(m);
  }

  void apply_on(SimNode& n, const Entry& e) { apply(n, e); }

  void read_done(SimNode& n, const raft::ReadState& rs) {
    if (rs.ctx & kWindowRoundCtx) {
      n.win->round_done(rs.ctx & ~kWindowRoundCtx, rs.ok);  // released in window_pump
      return;
    }
    auto it = reads_.find(rs.ctx);
    if (it == reads_.end()) fail("node " + std::to_string(n.id) + " answered an unknown read");
    PendingRead r = it->second;
    reads_.erase(it);
    if (r.node != n.id || r.incarnation != n.incarnation) fail("a read answered by another node or incarnation");
    if (!rs.ok) return;  // leadership lost: the client gets an error and retries
    const tickets::Sequence* s = n.sm.find(r.seq);
    uint64_t last = s ? s->last : 0;
    ++stats_.reads_answered;
    if (last < r.floor) {
      fail("stale read: TICKET.LAST " + r.seq + " on node " + std::to_string(n.id) + " answered " +
           std::to_string(last) + ", but " + std::to_string(r.floor) + " was acknowledged before the read was sent");
    }
  }

 private:
  // Crash points: right after granting a vote or acknowledging entries is where a lost write
  // does the most damage, so turbulent seeds crash there far more often than at random.
  void crash_at_interesting_points(SimNode& n, const Message& m) {
    if (m.reject) return;
    double p = m.type == raft::MessageType::kVoteResp ? 0.3 : m.type == raft::MessageType::kAppendResp ? 0.01 : 0.0;
    if (p > 0 && rng_.chance(p)) crash_soon_[n.id] = now_ + rng_.range(0, 2);
  }

  void write_to_disk(SimNode& n, const std::vector<Entry>& entries) {
    Disk& d = n.disk;
    uint64_t snap_index = d.snap ? d.snap->index : 0;
    for (const Entry& e : entries) {
      if (e.index <= snap_index) continue;  // already covered by a newer snapshot
      uint64_t last = d.entries.empty() ? snap_index : d.entries.back().index;
      if (e.index <= last) {
        while (!d.entries.empty() && d.entries.back().index >= e.index) d.entries.pop_back();
        last = d.entries.empty() ? snap_index : d.entries.back().index;
      }
      if (e.index != last + 1) fail("disk: non-contiguous append on node " + std::to_string(n.id));
      d.entries.push_back(e);
    }
  }

  static bool has_write(const SimNode& n, uint64_t token) {
    for (const DiskWrite& w : n.writing) {
      if (!w.done && w.entries.back().index == token) return true;
    }
    return false;
  }

  // The write whose last entry is `token` completed (writes never carry no entries).
  void complete_write(SimNode& n, uint64_t token) {
    size_t i = 0;
    while (n.writing[i].entries.back().index != token) ++i;
    n.writing[i].done = true;
    // A write that completes ahead of an earlier one is a crash point worth trying: a crash
    // now leaves a hole with a landed write after it (recovery must drop that write).
    if (i > 0 && crash_p_ > 0 && !crash_soon_.count(n.id) && rng_.chance(turbulent_ ? 0.2 : 0.05)) {
      crash_soon_[n.id] = now_ + rng_.range(0, 1);
    }
    if (testing::disk_bugs.durable_past_hole) {
      // The deliberate bug: durable as soon as it completes, though an earlier write may not
      // have landed (a crash then keeps neither).
      n.durable = std::max(n.durable, token);
    }
    while (!n.writing.empty() && n.writing.front().done) {
      write_to_disk(n, n.writing.front().entries);
      n.durable = std::max(n.durable, n.writing.front().entries.back().index);
      n.writing.erase(n.writing.begin());
    }
    drain(n);
  }

  // ---------------------------------------------------------------------------------------
  // the state machine and the client-visible checks

  void apply(SimNode& n, const Entry& e) {
    if (e.index != n.sm_applied + 1) {
      fail("node " + std::to_string(n.id) + " applies index " + std::to_string(e.index) + " after " +
           std::to_string(n.sm_applied));
    }
    n.sm_applied = e.index;
    record_commit(e.index, e.term, fnv(e.data) ^ static_cast<uint64_t>(e.type), n.node ? n.node->term() : 0,
                  "apply on node " + std::to_string(n.id));
    tickets::Command cmd;
    tickets::ApplyResult res;
    if (e.type == EntryType::kNormal) {
      std::string bad = tickets::decode(e.data, &cmd);
      if (!bad.empty()) fail("committed entry " + std::to_string(e.index) + " does not decode: " + bad);
      res = n.sm.apply(e.index, cmd);
      n.win->applied(e.index, e.term, cmd, res, n.sm);
    }
    // Every node's ticket state after the same index is the same (state machine safety for
    // the application's state, not only for the log).
    record_state(e.index, fnv(n.sm.encode_snapshot()), n.id);
    if (e.type == EntryType::kConfChange) {
      for (const Removal& r : removals_) {
        if (r.index == e.index && r.term == e.term && !stop_at_.count(r.id) && !nodes_[r.id].stopped)
          stop_at_[r.id] = now_ + (linger_removed_ ? rng_.range(200, 800) : rng_.range(0, 60));
      }
    }
    // Answer the client that proposed THIS entry (index and term), and fail one whose entry
    // was replaced by another.
    for (auto it = ops_.begin(); it != ops_.end();) {
      if (it->node != n.id || it->incarnation != n.incarnation || it->index != e.index) {
        ++it;
        continue;
      }
      if (it->term == e.term) {
        if (e.type != EntryType::kNormal || !(cmd == it->cmd)) fail("client answered with another entry");
        answer(*it, res, n.sm);
      }
      it = ops_.erase(it);
    }
  }

  void restore(SimNode& n, const raft::Snapshot& snap) {
    std::string bad = n.sm.decode_snapshot(snap.data, snap.index);
    if (!bad.empty()) fail("node " + std::to_string(n.id) + ": snapshot does not decode: " + bad);
  }

  void record_state(uint64_t index, uint64_t hash, uint64_t node) {
    if (state_hash_.size() <= index) state_hash_.resize(index + 1, 0);
    if (state_hash_[index] == 0) {
      state_hash_[index] = hash | 1;
    } else if (state_hash_[index] != (hash | 1)) {
      fail("ticket state after index " + std::to_string(index) + " differs on node " + std::to_string(node));
    }
  }

  // The client's answer: per Allocate item its range (or an error), for a Create or Floor the
  // promise that later tickets of that sequence are above the sequence's last value.
  void answer(const ClientOp& op, const tickets::ApplyResult& res, const tickets::StateMachine& sm) {
    ++stats_.acked;
    if (forced_) ++stats_.acked_after_force;
    if (op.cmd.kind != tickets::Command::Kind::kAllocate) {
      if (res.status == tickets::Status::kOk || res.status == tickets::Status::kExists) {
        // A window sequence's last is its reserved mark, above tickets still to be handed
        // out of the leader's window: what is promised there is the Floor's value (and a
        // new sequence's START), not the mark.
        uint64_t promise = res.last;
        const tickets::Sequence* s = sm.find(op.cmd.name);
        if (s != nullptr && s->mode == tickets::Mode::kWindow) {
          if (op.cmd.kind == tickets::Command::Kind::kFloor) promise = op.cmd.value;
          else if (res.status == tickets::Status::kExists) promise = 0;
        }
        uint64_t& m = max_acked_end_[op.cmd.name];
        m = std::max(m, promise);
        if (opt_.force_new_cluster) ack_log_.push_back({op.node, op.index, op.term, op.cmd.name, promise});
      }
      return;
    }
    for (size_t i = 0; i < op.cmd.items.size(); ++i) {
      if (res.items[i].status != tickets::Status::kOk) continue;
      const tickets::Command::Item& it = op.cmd.items[i];
      if (opt_.force_new_cluster)
        ack_log_.push_back({op.node, op.index, op.term, it.name, res.items[i].first + it.n - 1});
      ack(it.name, res.items[i].first, res.items[i].first + it.n - 1, op.floors[i]);
      if (op.liveness) liveness_acked_ = true;
    }
  }

  void ack(const std::string& seq, uint64_t first, uint64_t last, uint64_t floor) {
    stats_.tickets += last - first + 1;
    if (first <= floor) {
      fail(seq + " tickets [" + std::to_string(first) + "," + std::to_string(last) + "] not above " +
           std::to_string(floor) + ", acknowledged or promised before the proposal was made");
    }
    std::map<uint64_t, uint64_t>& acked = acked_[seq];
    auto next = acked.lower_bound(first);
    if (next != acked.end() && next->first <= last) fail(seq + " ticket range acknowledged twice");
    if (next != acked.begin() && std::prev(next)->second >= first) fail(seq + " ticket range overlaps an acked one");
    acked[first] = last;
    uint64_t& m = max_acked_end_[seq];
    m = std::max(m, last);
  }

  void record_commit(uint64_t index, uint64_t term, uint64_t hash, uint64_t observed_term, const std::string& who) {
    if (committed_.size() <= index) committed_.resize(index + 1);
    CommitRecord& r = committed_[index];
    if (!r.set) {
      r = CommitRecord{term, hash, observed_term, true};
    } else if (r.term != term || (hash != 0 && r.hash != 0 && r.hash != hash)) {
      fail("state machine safety: index " + std::to_string(index) + " committed as term " + std::to_string(r.term) +
           " and as term " + std::to_string(term) + " (" + who + ")");
    } else if (r.hash == 0) {
      r.hash = hash;
    }
  }

  // Log matching: an (index, term) pair names one entry with one predecessor term, everywhere.
  void check_new_entry(SimNode& n, const Entry& e) {
    auto prev = e.index == 1 ? std::optional<uint64_t>(0) : n.node->term_at(e.index - 1);
    uint64_t h = fnv(e.data) ^ static_cast<uint64_t>(e.type);
    auto [it, fresh] = entries_.try_emplace({e.index, e.term}, EntryMeta{h, prev.value_or(UINT64_MAX)});
    if (!fresh) {
      if (it->second.hash != h) fail("log matching: two different entries at (" + std::to_string(e.index) + "," + std::to_string(e.term) + ")");
      if (prev && it->second.prev_term != UINT64_MAX && it->second.prev_term != *prev)
        fail("log matching: different predecessors for (" + std::to_string(e.index) + "," + std::to_string(e.term) + ")");
    }
  }

  // ---------------------------------------------------------------------------------------
  // invariants after every step

  void check() {
    for (auto& [id, n] : nodes_) {
      if (!n.node) continue;
      raft::Node& r = *n.node;
      // Committed prefix as each node sees it (recorded by term, hash filled in at apply).
      if (r.commit_index() > n.seen_commit) {
        for (uint64_t i = std::max(n.seen_commit + 1, r.snapshot_index() + 1); i <= r.commit_index(); ++i)
          record_commit(i, *r.term_at(i), 0, r.term(), "commit on node " + std::to_string(id));
        n.seen_commit = r.commit_index();
      }
      if (r.role() != Role::kLeader) continue;
      auto [it, fresh] = leader_of_term_.try_emplace(r.term(), id);
      if (!fresh && it->second != id) {
        fail("two leaders in term " + std::to_string(r.term()) + ": " + std::to_string(it->second) + " and " + std::to_string(id));
      }
      if (fresh) {
        check_leader_completeness(n);
        // Turbulent seeds often kill a leader right after it wins, before its no-op spreads.
        if (turbulent_ && crash_p_ > 0 && rng_.chance(0.5)) crash_soon_[id] = now_ + rng_.range(0, 3);
      }
    }
  }

  void check_leader_completeness(SimNode& n) {
    raft::Node& r = *n.node;
    for (uint64_t i = r.snapshot_index() + 1; i < committed_.size(); ++i) {
      const CommitRecord& c = committed_[i];
      if (!c.set || c.observed_term >= r.term()) continue;
      auto t = r.term_at(i);
      if (!t || *t != c.term) {
        fail("leader completeness: leader " + std::to_string(n.id) + " of term " + std::to_string(r.term()) +
             " lacks committed entry " + std::to_string(i) + " (term " + std::to_string(c.term) + ")");
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // liveness after the faults heal

  void liveness() {
    blocked_.clear();
    heal_at_ = 0;
    drop_p_ = 0;
    dup_p_ = 0;
    crash_p_ = 0;
    partition_p_ = 0;
    member_p_ = 0;
    turbulent_ = false;
    crash_soon_.clear();
    for (auto& [id, n] : nodes_) {
      n.paused_until = 0;
      if (!n.node && !n.stopped) restart(n);
    }
    trace("liveness phase");
    liveness_acked_ = false;
    for (int t = 0; t < opt_.liveness_ticks; ++t) {
      ++step_;
      advance();
      check();
      if (liveness_acked_) {
        stats_.liveness_ticks_used = static_cast<uint64_t>(t);
        return;
      }
      if (t % 5 == 0) {
        if (SimNode* l = leader()) propose(*l, tickets::Command::allocate({{"default", 1}}), true);
      }
    }
    std::string roles;
    for (auto& [id, n] : nodes_) {
      if (!n.node) continue;
      roles += " " + std::to_string(id) + ":" + raft::to_string(n.node->role()) + "/t" + std::to_string(n.node->term()) +
               "/last" + std::to_string(n.node->last_index()) + "/commit" + std::to_string(n.node->commit_index()) +
               "/voters" + std::to_string(n.node->configuration().voter_count()) + "/durable" +
               std::to_string(n.node->durable_index()) + "/staged" + std::to_string(n.staged.size()) + "/writing" + std::to_string(n.writing.size());
      for (const auto& p : n.node->progress()) {
        roles += " [peer " + std::to_string(p.id) + " match " + std::to_string(p.match) + " next " + std::to_string(p.next) +
                 " state " + std::to_string(static_cast<int>(p.state)) + " inflight " + std::to_string(p.inflight.size()) +
                 " probe_sent " + std::to_string(p.probe_sent) + "]";
      }
    }
    fail("liveness: no proposal committed within " + std::to_string(opt_.liveness_ticks) + " ticks after heal;" + roles);
  }

  struct EntryMeta {
    uint64_t hash;
    uint64_t prev_term;
  };
  struct Removal {
    uint64_t id, index, term;
  };
  // A client's acknowledgement: by which node, from which entry, the highest ticket (or
  // promise) of which sequence (kept only with force_new_cluster: it chooses the floors).
  struct AckRecord {
    uint64_t node, index, term;
    std::string seq;
    uint64_t last;
    bool window = false;  // from a leader's window (no entry of its own): always floored
  };

  SimOptions opt_;
  Rng rng_;
  bool lease_ = false;
  uint64_t rounds_bound_ = 0;  // window rounds in flight per leader: 1 (as the server) or no bound
  uint64_t now_ = 0;
  int step_ = 0;
  double drop_p_, dup_p_, reorder_p_, crash_p_, partition_p_, member_p_, snapshot_p_, propose_p_;
  int disk_latency_ = 0;
  size_t disk_writes_max_ = 1;
  bool turbulent_ = false;
  bool apply_early_ = false;
  double hs_full_p_ = 0;  // chance that a hard state save or snapshot install fails (disk full)
  uint64_t backlog_limit_ = 64;
  uint64_t max_msg_bytes_ = 256;
  int max_inflight_ = 4;
  int max_nodes_ = 7;
  uint64_t next_id_ = 1;
  std::map<uint64_t, SimNode> nodes_;
  std::priority_queue<InFlight, std::vector<InFlight>, std::greater<InFlight>> net_;
  uint64_t seq_ = 0;
  std::set<std::pair<uint64_t, uint64_t>> blocked_;
  uint64_t heal_at_ = 0;
  std::map<uint64_t, uint64_t> stop_at_;
  bool linger_removed_ = false;
  std::map<uint64_t, uint64_t> crash_soon_;
  std::vector<Removal> removals_;
  uint64_t force_at_ = 0;  // the step of the lost majority (0: never)
  bool forced_ = false;
  std::vector<AckRecord> ack_log_;
  std::vector<ClientOp> ops_;
  std::map<uint64_t, PendingRead> reads_;  // by read_index ctx
  uint64_t next_read_ = 1;
  Rng client_rng_{opt_.seed * 0x9E3779B97F4A7C15ull + 3};
  Rng clock_rng_{opt_.seed * 0xD1B54A32D192ED03ull + 5};  // each node's clock rate
  std::map<uint64_t, WindowOp> window_ops_;  // by batch id, until released
  uint64_t next_window_op_ = 1;
  std::map<std::string, std::map<uint64_t, uint64_t>> acked_;  // per sequence: first -> last
  std::map<std::string, uint64_t> max_acked_end_;              // per sequence
  std::vector<uint64_t> state_hash_;  // per index: the ticket state after it (| 1; 0 = unseen)
  bool liveness_acked_ = false;
  std::vector<CommitRecord> committed_;
  std::map<std::pair<uint64_t, uint64_t>, EntryMeta> entries_;
  std::map<uint64_t, uint64_t> leader_of_term_;
  SimStats stats_;
};

bool SimDriverHooks::save_hard_state(const raft::HardState& hs) { return sim_.save_hard_state(n_, hs); }
bool SimDriverHooks::idle() const { return sim_.idle(n_); }
bool SimDriverHooks::install_snapshot(const raft::Snapshot& s) { return sim_.install_snapshot(n_, s); }
void SimDriverHooks::truncate_from(uint64_t index) { sim_.truncate_from(n_, index); }
void SimDriverHooks::append(const Entry& e) { sim_.append(n_, e); }
uint64_t SimDriverHooks::last_index() const { return n_.last; }
uint64_t SimDriverHooks::durable_index() const { return n_.durable; }
void SimDriverHooks::start_write() { sim_.start_write(n_); }
void SimDriverHooks::send(const Message& m) { sim_.send_from(n_, m); }
void SimDriverHooks::apply(const Entry& e) { sim_.apply_on(n_, e); }
void SimDriverHooks::read_done(const raft::ReadState& rs) { sim_.read_done(n_, rs); }

}  // namespace

std::string SimResult::summary() const {
  std::ostringstream os;
  os << "seed " << seed << (ok ? " ok" : " FAILED") << ": commits=" << stats.max_commit << " acked=" << stats.acked << " reads=" << stats.reads_answered << "/" << stats.reads
     << " tickets=" << stats.tickets << " leaders=" << stats.elections << " crashes=" << stats.crashes
     << " partitions=" << stats.partitions << " conf_changes=" << stats.conf_changes
     << " snapshots=" << stats.snapshots_taken << "/" << stats.snapshots_installed << " msgs=" << stats.messages_sent
     << " dropped=" << stats.messages_dropped << " removed_aware=" << stats.removed_aware
     << " window=" << stats.window_released << "/" << stats.window_batches << "/" << stats.window_tickets
     << " reserves=" << stats.reservations << " lease_releases=" << stats.lease_releases;
  if (stats.forced) os << " forced=" << stats.forced << " floors=" << stats.floors << " acked_after=" << stats.acked_after_force;
  if (!ok) os << "\n  at step " << step << ": " << failure << "\n  replay: raft-sim --start-seed " << seed << " --seeds 1 --nodes " << nodes
                 << " --steps " << steps << replay_flags << " --trace";
  return os.str();
}

SimResult run_simulation(const SimOptions& opt) {
  Simulation s(opt);
  return s.run();
}

}  // namespace ticketd::sim
