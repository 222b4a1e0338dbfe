// libFuzzer target for raft::Node fed by a hostile network: a sequence of messages (built
// from fields relative to the node's state, or decoded by raft::decode), ticks, proposals,
// Ready handling with immediate or deferred on_persisted, compactions and restarts from the
// in-memory disk, driven the way the simulator drives a node.
// Input: [control byte][ops...]. Control bits: 1 the node starts as a --join node (empty
// state) instead of a voter of {1,2,3}; 2 pre_vote off; 4 check_quorum off.
// Ops (first byte % 8): 0 tick (1 + byte/8 ticks), 1 a message from fields, 2 a message through
// the codec ([u16 len][bytes], checksum rewritten), 3 handle one Ready (bit 3: defer
// on_persisted), 4 report the oldest deferred write, 5 propose (bit 3 set: a linearizable read,
// read_index), 6 restart from the disk, 7 compact at the applied index.
// Traps on: a crash of course, and commit > last index, applied > commit, term or commit going
// backwards within one process, a term above kMaxTerm + ticks, Ready entries that do not
// continue the disk after its truncation, committed entries out of order or an index handed
// out as committed with two different terms, has_ready() that never settles; a read released
// twice or never asked for, or released ok at an index below the commit index when it was
// asked or above what was handed out as committed.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ticketd/raft/codec.h"
#include "ticketd/raft/node.h"

namespace {

using namespace ticketd::raft;

void require(bool cond) {
  if (!cond) __builtin_trap();
}

class Input {
 public:
  Input(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool empty() const { return n_ == 0; }
  uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(u8()) << (8 * i);
    return v;
  }
  std::string bytes(size_t n) {
    n = std::min(n, n_);
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    n_ -= n;
    return s;
  }

 private:
  const uint8_t* p_;
  size_t n_;
};

struct Disk {
  HardState hs;
  std::optional<Snapshot> snap;
  std::vector<Entry> entries;
};

class Harness {
 public:
  explicit Harness(uint8_t ctl) {
    cfg_.id = 1;
    cfg_.election_ticks = 10;
    cfg_.heartbeat_ticks = 2;
    cfg_.max_inflight_msgs = 2;
    cfg_.max_msg_bytes = 64;
    cfg_.pre_vote = !(ctl & 2);
    cfg_.check_quorum = !(ctl & 4);
    cfg_.lease_ticks = (ctl & 8) ? 5 : 0;
    cfg_.guard_votes_after_start = (ctl & 16) != 0;
    if (!(ctl & 1)) {
      Configuration c;
      for (uint64_t id = 1; id <= 3; ++id) c.servers.push_back(Server{id, Suffrage::kVoter, ""});
      InitialState st = bootstrap(c);
      disk_.hs = st.hard_state;
      disk_.entries = st.entries;
    }
    start();
  }

  void run(Input& in) {
    int ops = 0;
    while (!in.empty() && ops++ < 2000) {
      uint8_t op = in.u8();
      switch (op % 8) {
        case 0:
          for (int i = 0; i <= op / 8; ++i) {
            node_->tick();
            ++ticks_;
          }
          break;
        case 1: step(field_message(in)); break;
        case 2: codec_message(in); break;
        case 3: handle_ready((op & 8) != 0); break;
        case 4: report_oldest(); break;
        case 5:
          if (op & 8) {
            read();
          } else {
            node_->propose(std::string(8, static_cast<char>(op)));
          }
          break;
        case 6: start(); break;
        case 7:
          if (node_->applied_index() > node_->snapshot_index()) {
            node_->compact(node_->applied_index(), "s");
            disk_.snap = *node_->snapshot();
            std::erase_if(disk_.entries, [&](const Entry& e) { return e.index <= disk_.snap->index; });
          }
          break;
      }
      check();
    }
    for (int guard = 0; node_->has_ready(); ++guard) {
      require(guard < 100);
      handle_ready(false);
      check();
    }
  }

 private:
  void start() {
    InitialState st{disk_.hs, disk_.snap, disk_.entries};
    node_ = std::make_unique<Node>(cfg_, std::move(st));
    deferred_.clear();
    reads_.clear();  // a restart forgets its reads (the driver answers them with an error)
    last_term_ = node_->term();
    last_commit_ = node_->commit_index();
    applied_ = node_->applied_index();
  }

  uint64_t rel(Input& in, uint64_t base) {
    uint8_t mode = in.u8();
    switch (mode & 3) {
      case 0: return base;
      case 1: return base + (mode >> 2);
      case 2: return base > (mode >> 2) ? base - (mode >> 2) : 0;
      default: return in.u64();
    }
  }

  Configuration some_configuration(Input& in) {
    uint8_t members = in.u8();
    Configuration c;
    for (uint64_t id = 1; id <= 5; ++id) {
      if (members & (1u << (id - 1))) {
        c.servers.push_back(Server{id, (members & 0x80) && id > 3 ? Suffrage::kNonVoter : Suffrage::kVoter, ""});
      }
    }
    if ((members & 0x60) == 0x60 && !c.servers.empty()) c.servers.push_back(c.servers.front());
    return c;
  }

  Message field_message(Input& in) {
    Message m;
    m.type = static_cast<MessageType>(in.u8() % kMessageTypeCount);
    uint8_t who = in.u8();
    m.from = who % 6;  // 0 invalid, 1 ourselves, 2..3 members, 4..5 outsiders
    m.to = (who & 0x80) ? 2 : 1;
    m.term = rel(in, node_->term());
    m.index = rel(in, node_->last_index());
    m.log_term = rel(in, node_->term_at(m.index).value_or(node_->last_term()));
    m.commit = rel(in, node_->commit_index());
    uint8_t flags = in.u8();
    m.reject = flags & 1;
    m.transfer = flags & 2;
    if (flags & 4) {
      m.hint_index = rel(in, m.index);
      m.hint_term = rel(in, m.log_term);
    }
    if (m.type == MessageType::kAppend) {
      size_t n = in.u8() % 6;
      uint64_t term = m.log_term;
      for (size_t k = 0; k < n; ++k) {
        uint8_t shape = in.u8();
        Entry e;
        e.index = (shape & 1) ? rel(in, m.index + 1 + k) : m.index + 1 + k;
        term = (shape & 2) ? rel(in, term) : std::max(term, m.term - (shape >> 7));
        e.term = term;
        e.type = static_cast<EntryType>((shape >> 2) % 3);
        if (e.type == EntryType::kConfChange) {
          e.data = (shape & 0x20) ? in.bytes(in.u8() % 16) : encode_configuration(some_configuration(in));
        } else {
          e.data = std::string(8, static_cast<char>(shape));
        }
        m.entries.push_back(std::move(e));
      }
    }
    if (m.type == MessageType::kInstallSnapshot || (flags & 8)) {
      Snapshot s;
      s.index = rel(in, node_->commit_index() + 1);
      s.term = rel(in, m.term);
      s.configuration = some_configuration(in);
      s.data = "snap";
      m.snapshot = std::move(s);
    }
    return m;
  }

  void codec_message(Input& in) {
    size_t len = in.u8() | (static_cast<size_t>(in.u8()) << 8);
    std::string b = in.bytes(len);
    if (b.size() >= 9) {
      uint64_t sum = XXH3_64bits(b.data(), b.size() - 8);
      std::memcpy(b.data() + b.size() - 8, &sum, 8);
    }
    Message m;
    if (decode(b, &m).empty()) step(m);
  }

  void step(const Message& m) {
    StepResult r = node_->step(m);
    require(r.ok() || r.why[0] != '\0');
  }

  void handle_ready(bool defer) {
    if (!node_->has_ready()) return;
    Ready rd = node_->ready();
    if (rd.snapshot) {
      disk_.snap = rd.snapshot;
      disk_.entries.clear();
      applied_ = rd.snapshot->index;
    }
    if (rd.truncate_from) {
      require(rd.truncate_from > (disk_.snap ? disk_.snap->index : 0));
      while (!disk_.entries.empty() && disk_.entries.back().index >= rd.truncate_from) disk_.entries.pop_back();
    }
    uint64_t disk_last = disk_.entries.empty() ? (disk_.snap ? disk_.snap->index : 0) : disk_.entries.back().index;
    for (const Entry& e : rd.entries) {
      require(e.index == disk_last + 1);
      disk_last = e.index;
      disk_.entries.push_back(e);
    }
    if (rd.hard_state) disk_.hs = *rd.hard_state;
    if (rd.durable_mark) {
      if (defer) {
        deferred_.push_back(*rd.durable_mark);
      } else {
        while (!deferred_.empty()) report_oldest();
        node_->on_persisted(rd.durable_mark->index, rd.durable_mark->term);
      }
    }
    for (const Entry& e : rd.committed_entries) {
      require(e.index == applied_ + 1);
      applied_ = e.index;
      auto [it, fresh] = committed_.try_emplace(e.index, e.term);
      require(fresh || it->second == e.term);
    }
    for (const ReadState& rs : rd.read_states) {
      auto it = reads_.find(rs.ctx);
      require(it != reads_.end());  // asked for, and released once
      if (rs.ok) require(rs.index >= it->second && rs.index <= applied_);
      reads_.erase(it);
    }
    require(reads_.size() <= cfg_.max_pending_reads);
    // A lease only on a leader, never longer than configured, never from the future.
    Lease le = node_->lease();
    require(le.ticks == 0 || (node_->role() == Role::kLeader && le.ticks == static_cast<uint64_t>(cfg_.lease_ticks) &&
                              le.from_tick <= node_->now_ticks() && le.from_tick + le.ticks > node_->now_ticks()));
  }

  void read() {
    uint64_t ctx = ++next_ctx_;
    uint64_t commit = node_->commit_index();
    ReadIndexResult r = node_->read_index(ctx);
    if (r.status == ReadIndexStatus::kOk) reads_.emplace(ctx, commit);
  }

  void report_oldest() {
    if (deferred_.empty()) return;
    LogPosition p = deferred_.front();
    deferred_.pop_front();
    node_->on_persisted(p.index, p.term);
  }

  void check() {
    require(node_->commit_index() <= node_->last_index());
    require(node_->applied_index() <= node_->commit_index());
    require(node_->snapshot_index() <= node_->commit_index());
    require(node_->term() >= last_term_);
    require(node_->commit_index() >= last_commit_);
    require(node_->term() <= kMaxTerm + ticks_ + 1);
    last_term_ = node_->term();
    last_commit_ = node_->commit_index();
  }

  Config cfg_;
  Disk disk_;
  std::unique_ptr<Node> node_;
  std::deque<LogPosition> deferred_;
  std::map<uint64_t, uint64_t> committed_;  // index -> term of every entry handed out committed
  std::map<uint64_t, uint64_t> reads_;      // read ctx -> the commit index when it was asked
  uint64_t next_ctx_ = 0;
  uint64_t applied_ = 0;
  uint64_t last_term_ = 0;
  uint64_t last_commit_ = 0;
  uint64_t ticks_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  if (size < 1) return 0;
  Input in(raw + 1, size - 1);
  Harness h(raw[0]);
  h.run(in);
  return 0;
}
