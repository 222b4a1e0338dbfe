#include "ticketd/raft/raft_log.h"

#include "ticketd/base/check.h"

namespace ticketd::raft {

RaftLog::RaftLog(std::optional<Snapshot> snap, std::vector<Entry> entries) {
  if (snap) {
    snap_index_ = snap->index;
    snap_term_ = snap->term;
  }
  for (Entry& e : entries) {
    if (e.index <= snap_index_) continue;  // tolerate a log that overlaps the snapshot
    TICKETD_CHECK(e.index == last_index() + 1);
    entries_.push_back(std::move(e));
  }
}

std::optional<uint64_t> RaftLog::term_at(uint64_t index) const {
  if (index == snap_index_) return snap_term_;
  if (index < snap_index_ || index > last_index()) return std::nullopt;
  return entries_[index - snap_index_ - 1].term;
}

const Entry& RaftLog::at(uint64_t index) const {
  TICKETD_CHECK(index > snap_index_ && index <= last_index());
  return entries_[index - snap_index_ - 1];
}

void RaftLog::append(Entry e) {
  TICKETD_CHECK(e.index == last_index() + 1);
  TICKETD_CHECK(e.term >= last_term());
  entries_.push_back(std::move(e));
}

void RaftLog::truncate_from(uint64_t from) {
  TICKETD_CHECK(from > snap_index_);
  while (last_index() >= from) entries_.pop_back();
}

void RaftLog::compact_to(uint64_t index, uint64_t term) {
  TICKETD_CHECK(index <= last_index());
  while (!entries_.empty() && entries_.front().index <= index) entries_.pop_front();
  snap_index_ = index;
  snap_term_ = term;
}

void RaftLog::reset_to(uint64_t index, uint64_t term) {
  entries_.clear();
  snap_index_ = index;
  snap_term_ = term;
}

uint64_t RaftLog::find_conflict_by_term(uint64_t index, uint64_t term) const {
  if (index > last_index()) index = last_index();
  while (index > snap_index_) {
    if (entries_[index - snap_index_ - 1].term <= term) return index;
    --index;
  }
  return snap_index_;
}

}  // namespace ticketd::raft
