// The ticket state machine: named sequences and their counters, the log-entry commands that
// change them, and the snapshot of them. Pure and deterministic, like raft/: no sockets,
// files, threads or clocks. Every node applies the same committed entries in the same order
// and so hands out the same ranges; the rules below depend only on the entry and the state.
//
//   tickets::StateMachine sm;                         // holds the sequence "default"
//   std::string e = tickets::encode(tickets::Command::allocate({{"default", 3}}));
//   tickets::ApplyResult r = sm.apply(index, e);      // r.items[0].first == 1: tickets 1..3
//
// Entries and snapshots arrive from disk and from the network: decoding validates every
// byte and answers an error text, never a crash. A committed entry that decodes but cannot
// apply (an unknown sequence, a counter that would pass 2^64-1) changes nothing and says why
// in its result; the same on every node.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ticketd::tickets {

inline constexpr std::string_view kDefaultSequence = "default";
inline constexpr size_t kMaxNameBytes = 128;          // a sequence name
inline constexpr size_t kMaxItemsPerEntry = 1u << 16;  // sequences in one Allocate entry
inline constexpr uint64_t kMaxBlock = 1'000'000;      // tickets in one TICKET.BLOCK

// "" if `name` may name a sequence: 1..kMaxNameBytes printable ASCII bytes, no spaces.
std::string check_name(std::string_view name);
// The same test without the message (the per-request path).
bool name_ok(std::string_view name);

struct Sequence {
  uint64_t last = 0;           // the last ticket handed out (the next is last + 1)
  uint64_t issued = 0;         // tickets handed out by Allocate entries
  uint64_t created_index = 0;  // the log index of the entry that created it (0: default)
};

// One log entry's command. Allocate carries one sum per sequence: every request that
// arrived while the previous entry was in flight, for every sequence, in one entry.
struct Command {
  enum class Kind : uint8_t { kAllocate = 1, kCreate = 2, kDrop = 3, kFloor = 4 };
  struct Item {
    std::string name;
    uint64_t n = 0;
    bool operator==(const Item&) const = default;
  };
  Kind kind = Kind::kAllocate;
  std::vector<Item> items;  // kAllocate
  std::string name;         // kCreate, kDrop, kFloor
  uint64_t value = 0;       // kCreate: the first ticket; kFloor: every later ticket is > value

  static Command allocate(std::vector<Item> items);
  static Command create(std::string name, uint64_t first);
  static Command drop(std::string name);
  static Command floor(std::string name, uint64_t value);
  bool operator==(const Command&) const = default;
};

// [u8 version=1][u8 kind][fields, little-endian][u64 xxh3-64 of all before]; except the
// hot path, Allocate{default: n} alone, which is the bare 8-byte n (the entry of builds
// before sequences existed, which this build reads and writes alike).
std::string encode(const Command& c);
// "" on success. An entry of exactly 8 bytes is Allocate{default, n}.
std::string decode(std::string_view in, Command* out);

enum class Status : uint8_t {
  kOk,
  kNoSuchSequence,  // Allocate/Drop/Floor of a name that does not exist
  kExists,          // Create of a name that exists
  kExhausted,       // the counter would pass 2^64-1
  kInvalid,         // a name or value the rules refuse (dropping "default", START 0, ...)
};
const char* to_string(Status s);

struct ItemResult {
  Status status = Status::kOk;
  uint64_t first = 0;  // kAllocate: the range is [first, first + n - 1]
};
struct ApplyResult {
  Status status = Status::kOk;    // kCreate/kDrop/kFloor
  uint64_t last = 0;              // kFloor/kCreate: the sequence's last value after it
  std::vector<ItemResult> items;  // kAllocate: one per item, in order
};

class StateMachine {
 public:
  StateMachine();

  // Applies the command of the committed entry at `index` (which must increase).
  ApplyResult apply(uint64_t index, const Command& c);

  const Sequence* find(std::string_view name) const;
  size_t size() const { return seqs_.size(); }
  const std::map<std::string, Sequence, std::less<>>& sequences() const { return seqs_; }
  uint64_t applied_index() const { return applied_index_; }

  // [u8 version=2][u32 count]{u16 name len, name, u64 last, u64 issued, u64 created_index}
  // [u64 xxh3-64 of all before]. Names in sorted order, so equal states encode equally.
  std::string encode_snapshot() const;
  // Restores the state of a snapshot taken at log index `index`. "" on success (the state
  // is replaced only then). Also reads the snapshot data of builds before sequences
  // existed: exactly 8 bytes, the default counter.
  std::string decode_snapshot(std::string_view in, uint64_t index);

 private:
  std::map<std::string, Sequence, std::less<>> seqs_;
  uint64_t applied_index_ = 0;
};

}  // namespace ticketd::tickets
