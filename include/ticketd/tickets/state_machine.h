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
// Window mode (issue 15): the least reservation of a window sequence, and its bounds.
inline constexpr uint64_t kDefaultWindow = 10'000;
inline constexpr uint64_t kMaxWindow = 1'000'000'000;

// "" if `name` may name a sequence: 1..kMaxNameBytes printable ASCII bytes, no spaces.
std::string check_name(std::string_view name);
// The same test without the message (the per-request path).
bool name_ok(std::string_view name);

// How a sequence's tickets are handed out. Dense: every ticket is in an Allocate entry (no
// gaps but a quorum write per batch). Window: the leader reserves a range with one Reserve
// entry and hands its tickets out from memory once that entry committed; a leader change or
// a crash leaves the unused rest of a reservation as a gap, never a repeat. The state
// machine applies every command alike whatever the mode (the mode only tells the leader how
// to serve), so nodes that disagree on it still agree on every range.
enum class Mode : uint8_t { kDense = 0, kWindow = 1 };
const char* to_string(Mode m);

struct Sequence {
  uint64_t last = 0;           // the highest ticket the log has claimed: handed out (dense), or
                               // reserved (window); every later ticket is above it
  uint64_t issued = 0;         // tickets handed out by Allocate entries
  uint64_t created_index = 0;  // the log index of the entry that created it (0: default)
  Mode mode = Mode::kDense;
  uint64_t window = 0;         // window mode: the least reservation (1..kMaxWindow); dense: 0
  uint64_t reserved = 0;       // the up_to of the highest Reserve that applied (0: none)
  bool operator==(const Sequence&) const = default;
};

// The default sequence's mode where the state starts (no snapshot yet, or the snapshot of a
// build before window mode): the server's --default-mode flag. Give every node the same.
struct Options {
  Mode default_mode = Mode::kDense;
  uint64_t default_window = 0;  // 0: kDefaultWindow when the mode is window
};

// One log entry's command. Allocate carries one sum per sequence: every request that
// arrived while the previous entry was in flight, for every sequence, in one entry.
struct Command {
  enum class Kind : uint8_t {
    kAllocate = 1,
    kCreate = 2,
    kDrop = 3,
    kFloor = 4,
    kCreateWindow = 5,  // a window sequence: value is the first ticket, window its least reservation
    kReserve = 6,       // window mode: claims every ticket up to value for the proposing leader
  };
  struct Item {
    std::string name;
    uint64_t n = 0;
    bool operator==(const Item&) const = default;
  };
  Kind kind = Kind::kAllocate;
  std::vector<Item> items;  // kAllocate
  std::string name;         // kCreate, kCreateWindow, kDrop, kFloor, kReserve
  uint64_t value = 0;       // kCreate*: the first ticket; kFloor: every later ticket is > value;
                            // kReserve: up_to
  uint64_t window = 0;      // kCreateWindow

  static Command allocate(std::vector<Item> items);
  static Command create(std::string name, uint64_t first);
  static Command create_window(std::string name, uint64_t first, uint64_t window);
  static Command reserve(std::string name, uint64_t up_to);
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
  uint64_t last = 0;              // kFloor/kCreate*/kReserve: the sequence's last value after it
  std::vector<ItemResult> items;  // kAllocate: one per item, in order; kReserve (kOk): one,
                                  // the reservation is [items[0].first, last] (empty when
                                  // first > last: a Floor or Allocate claimed past up_to)
};

class StateMachine {
 public:
  StateMachine() : StateMachine(Options{}) {}
  explicit StateMachine(const Options& opts);

  // Applies the command of the committed entry at `index` (which must increase).
  ApplyResult apply(uint64_t index, const Command& c);

  const Sequence* find(std::string_view name) const;
  size_t size() const { return seqs_.size(); }
  const std::map<std::string, Sequence, std::less<>>& sequences() const { return seqs_; }
  uint64_t applied_index() const { return applied_index_; }

  // [u8 version=3][u32 count]{u16 name len, name, u64 last, u64 issued, u64 created_index,
  // u8 mode, u64 window, u64 reserved}[u64 xxh3-64 of all before]. Names in sorted order, so
  // equal states encode equally.
  std::string encode_snapshot() const;
  // Restores the state of a snapshot taken at log index `index`. "" on success (the state
  // is replaced only then). Also reads version 2 (no mode: every sequence dense, `default`
  // takes Options' mode) and the snapshot data of builds before sequences existed: exactly
  // 8 bytes, the default counter.
  std::string decode_snapshot(std::string_view in, uint64_t index);

 private:
  Sequence default_sequence(uint64_t last, uint64_t issued) const;

  Options opts_;
  std::map<std::string, Sequence, std::less<>> seqs_;
  uint64_t applied_index_ = 0;
};

}  // namespace ticketd::tickets
