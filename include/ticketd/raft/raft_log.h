// The in-memory Raft log behind an optional snapshot: entries (snapshot.index, last_index()].
// It only stores and looks up; it never decides what is committed or durable (that is Node's job)
// and never touches a disk.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include "ticketd/raft/types.h"

namespace ticketd::raft {

class RaftLog {
 public:
  RaftLog() = default;
  RaftLog(std::optional<Snapshot> snap, std::vector<Entry> entries);

  uint64_t snapshot_index() const { return snap_index_; }
  uint64_t snapshot_term() const { return snap_term_; }
  uint64_t first_index() const { return snap_index_ + 1; }
  uint64_t last_index() const { return snap_index_ + entries_.size(); }
  uint64_t last_term() const { return entries_.empty() ? snap_term_ : entries_.back().term; }

  // Term of the entry at `index`; 0 for index 0; nullopt if compacted away or past the end.
  std::optional<uint64_t> term_at(uint64_t index) const;
  bool matches(uint64_t index, uint64_t term) const {
    auto t = term_at(index);
    return t && *t == term;
  }
  // Requires first_index() <= index <= last_index().
  const Entry& at(uint64_t index) const;

  // Appends one entry at last_index() + 1.
  void append(Entry e);
  // Drops entries with index >= from (from > snapshot_index()).
  void truncate_from(uint64_t from);
  // Drops entries <= index and records (index, term) as the new log start.
  void compact_to(uint64_t index, uint64_t term);
  // Replaces everything with an empty log starting after (index, term).
  void reset_to(uint64_t index, uint64_t term);

  // The largest index k <= index with term_at(k) <= term (at least snapshot_index()); used by
  // fast backtracking on both sides.
  uint64_t find_conflict_by_term(uint64_t index, uint64_t term) const;

 private:
  uint64_t snap_index_ = 0;
  uint64_t snap_term_ = 0;
  std::deque<Entry> entries_;
};

}  // namespace ticketd::raft
