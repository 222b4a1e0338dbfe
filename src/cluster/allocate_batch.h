// One Allocate entry's worth of ticket requests, both ways: EntryStaging sums the shard
// batches that arrive while the previous entry is in flight into one item per sequence
// (`default` first, then the named sequences in the order they were first asked for), and
// RangeCutter cuts the applied entry's ranges back per batch, in submission order.
// Pure: no raft, no I/O; the ticket log (raft_ticket_log.cpp) owns the order and the waiters.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "../server/shard.h"
#include "ticketd/tickets/state_machine.h"

namespace ticketd::cluster {

// Sequences besides `default` in one Allocate entry: past this, the staged entry is proposed
// at once (even with a write in flight), so an entry stays small (at most ~600 KB).
inline constexpr size_t kMaxEntrySequences = 4096;
static_assert(kMaxEntrySequences + 1 <= tickets::kMaxItemsPerEntry);
static_assert(server::kMaxBatchSequences <= kMaxEntrySequences);

class EntryStaging {
 public:
  // Would a batch with this named part still fit in the entry?
  bool fits(const server::NamedBatch* named) const {
    return named == nullptr || items_.size() + named->slots.size() <= kMaxEntrySequences;
  }
  // Adds a batch: `default_n` tickets of the default sequence and its named part, whose slots
  // learn their item in the entry (Slot::item). Requires fits(named).
  void add(uint64_t default_n, server::NamedBatch* named);
  bool empty() const { return total_ == 0; }
  uint64_t total() const { return total_; }  // every ticket staged, all sequences
  uint64_t default_total() const { return default_total_; }
  size_t named_items() const { return items_.size(); }
  // The entry's payload: Allocate{default: n} alone is the 8-byte entry of earlier builds.
  std::string payload() const;
  void clear();

 private:
  uint64_t total_ = 0;
  uint64_t default_total_ = 0;
  std::vector<tickets::Command::Item> items_;  // the named sequences
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view v) const { return std::hash<std::string_view>{}(v); }
  };
  std::unordered_map<std::string, uint32_t, NameHash, std::equal_to<>> index_;  // name -> item
};

// Cuts an applied Allocate entry (laid out as EntryStaging staged it) into the ranges of the
// batches it carried. Call next() once per batch, in the order they were staged.
class RangeCutter {
 public:
  // `r` is how the entry applied; `has_default`/`named_items` its layout.
  RangeCutter(const tickets::ApplyResult& r, bool has_default, size_t named_items);
  // The batch's named slots get their first ticket and status; the returned result holds the
  // default part's range (status kOk when it has none) and the named part.
  server::BatchResult next(uint64_t default_n, server::NamedBatch* named);

 private:
  const tickets::ApplyResult& r_;
  size_t base_;
  uint64_t next_default_ = 0;
  server::BatchStatus default_status_ = server::BatchStatus::kOk;
  std::vector<uint64_t> cursor_;  // per named item: the next ticket to hand out
};

// What an Allocate item's status tells its requests.
server::BatchStatus item_status(tickets::Status st);

}  // namespace ticketd::cluster
