// Raft value types shared by the core, the codec, the simulator and the server driver.
// Plain data only: nothing here performs I/O, reads a clock or allocates behind the caller's back
// beyond the std containers it visibly holds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ticketd::raft {

// 0 is "nobody" for server ids, and "no entry" for indexes (the log starts at index 1).
inline constexpr uint64_t kNoId = 0;

// The largest term and index a peer may name (Node::step refuses anything above). Real terms
// grow by one per election and indexes by one per entry, so 2^48 terms (~8900 years at one
// election per millisecond) and 2^62 indexes are never reached; a message above them comes
// from a corrupt or hostile peer, and refusing it keeps term + 1 and index + n from wrapping.
inline constexpr uint64_t kMaxTerm = uint64_t{1} << 48;
inline constexpr uint64_t kMaxIndex = uint64_t{1} << 62;

enum class EntryType : uint8_t {
  kNormal = 0,      // opaque application payload (ticketd: Allocate{n} as 8 bytes little-endian)
  kNoop = 1,        // appended by every new leader; commits its term (Raft §5.4.2)
  kConfChange = 2,  // data = encode_configuration(full new configuration), not a delta
};

struct Entry {
  uint64_t term = 0;
  uint64_t index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  bool operator==(const Entry&) const = default;
};

enum class Suffrage : uint8_t {
  kVoter = 0,
  kNonVoter = 1,  // receives the log, never counted in a quorum, never campaigns
};

struct Server {
  uint64_t id = kNoId;
  Suffrage suffrage = Suffrage::kVoter;
  std::string context;  // opaque to raft (addresses, incarnation id)

  bool operator==(const Server&) const = default;
};

struct Configuration {
  std::vector<Server> servers;

  const Server* find(uint64_t id) const {
    for (const Server& s : servers)
      if (s.id == id) return &s;
    return nullptr;
  }
  bool is_voter(uint64_t id) const {
    const Server* s = find(id);
    return s != nullptr && s->suffrage == Suffrage::kVoter;
  }
  size_t voter_count() const {
    size_t n = 0;
    for (const Server& s : servers) n += s.suffrage == Suffrage::kVoter;
    return n;
  }
  bool operator==(const Configuration&) const = default;
};

// What must survive a crash besides the log. `commit` is a hint (it may be clamped on restart).
struct HardState {
  uint64_t term = 0;
  uint64_t vote = kNoId;
  uint64_t commit = 0;

  bool operator==(const HardState&) const = default;
};

// The application's state at `index` (all entries <= index applied), plus the configuration in
// force at that index. The log continues at index + 1.
struct Snapshot {
  uint64_t index = 0;
  uint64_t term = 0;
  Configuration configuration;
  std::string data;

  bool operator==(const Snapshot&) const = default;
};

enum class MessageType : uint8_t {
  kPreVote = 0,          // term = the term the sender would campaign in; index/log_term = its last
  kPreVoteResp = 1,      // reject; term = request's term if granted, else responder's term;
                         // a rejection with hint_index != 0 is a removal notice: the
                         // responder's committed configuration (at its commit index
                         // hint_index) does not hold the requester (older nodes ignore it)
  kVote = 2,             // term = candidate term; index/log_term = candidate's last entry
  kVoteResp = 3,         // reject; hint_index as for kPreVoteResp
  kAppend = 4,           // index/log_term = entry preceding `entries`; commit = leader commit
  kAppendResp = 5,       // success: index = last index now matching; reject: see hint_*
  kHeartbeat = 6,        // commit = min(leader commit, follower match); hint_index = the
                         // heartbeat round (ReadIndex, Node::read_index; 0 from older nodes)
  kHeartbeatResp = 7,    // hint_index = the round of the heartbeat answered (echoed as is)
  kInstallSnapshot = 8,  // snapshot set
  kTimeoutNow = 9,       // leadership transfer: campaign now, ignoring leases
};
inline constexpr int kMessageTypeCount = 10;

struct Message {
  MessageType type = MessageType::kAppend;
  uint64_t from = kNoId;
  uint64_t to = kNoId;
  uint64_t term = 0;
  uint64_t log_term = 0;
  uint64_t index = 0;
  uint64_t commit = 0;
  bool reject = false;
  bool transfer = false;  // a vote caused by leadership transfer: ignores leader leases
  // kAppendResp rejection: the follower's best guess of the last index that may match, and the
  // term there (fast backtracking); 0/0 if the follower's log is empty.
  uint64_t hint_index = 0;
  uint64_t hint_term = 0;
  std::vector<Entry> entries;
  std::optional<Snapshot> snapshot;

  bool operator==(const Message&) const = default;
};

const char* to_string(MessageType t);

}  // namespace ticketd::raft
