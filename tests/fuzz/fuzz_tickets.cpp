// libFuzzer target for the ticket state machine (src/tickets): entries and snapshots come
// from disk and from the network.
// Input: [control byte][records...], each record [u8 kind][u16 length][bytes]. Kind 0 is a
// snapshot to restore, anything else a log entry to apply. With control bit 0 set, the harness
// rewrites each record's trailing xxh3 so mutations reach the decoders past the checksum.
// Traps on: a decoded command or snapshot whose re-encoding does not decode to the same thing;
// a restored state that does not re-encode to what was restored (for the current format);
// an applied entry that lowers a counter or hands out a range that is not above everything
// handed out before in that sequence (within one life of the state, between restores);
// two state machines fed the same records disagreeing.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>

#include "ticketd/tickets/state_machine.h"

namespace {

void require(bool cond) {
  if (!cond) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  using namespace ticketd::tickets;
  if (size < 1) return 0;
  bool fix_sums = raw[0] & 1;
  size_t pos = 1;
  StateMachine a, b;
  std::map<std::string, uint64_t> high;  // per sequence: the last ticket handed out
  uint64_t index = 0;
  while (pos + 3 <= size) {
    uint8_t kind = raw[pos];
    size_t len = raw[pos + 1] | (static_cast<size_t>(raw[pos + 2]) << 8);
    pos += 3;
    if (len > size - pos) len = size - pos;
    std::string rec(reinterpret_cast<const char*>(raw + pos), len);
    pos += len;
    if (fix_sums && rec.size() >= 9) {
      uint64_t sum = XXH3_64bits(rec.data(), rec.size() - 8);  // LE host
      std::memcpy(rec.data() + rec.size() - 8, &sum, 8);
    }
    ++index;
    if (kind == 0) {
      std::string ea = a.decode_snapshot(rec, index);
      std::string eb = b.decode_snapshot(rec, index);
      require(ea == eb);
      if (!ea.empty()) continue;
      require(a.find(kDefaultSequence) != nullptr);
      // The current format re-encodes to itself; older ones (the bare counter, version 2
      // without modes) to a state that restores to the same state.
      if (rec.size() != 8 && rec[0] == 3) require(a.encode_snapshot() == rec);
      {
        StateMachine c;
        require(c.decode_snapshot(a.encode_snapshot(), index).empty());
        require(c.sequences() == a.sequences());
      }
      require(a.encode_snapshot() == b.encode_snapshot());
      high.clear();
      for (const auto& [name, s] : a.sequences()) high[name] = s.last;
      continue;
    }
    Command c;
    if (!decode(rec, &c).empty()) continue;
    Command again;
    require(decode(encode(c), &again).empty() && again == c);
    ApplyResult ra = a.apply(index, c);
    ApplyResult rb = b.apply(index, again);
    require(ra.status == rb.status && ra.last == rb.last && ra.items.size() == rb.items.size());
    if (c.kind == Command::Kind::kAllocate) {
      require(ra.items.size() == c.items.size());
      for (size_t i = 0; i < c.items.size(); ++i) {
        require(ra.items[i].first == rb.items[i].first);
        if (ra.items[i].status != Status::kOk || c.items[i].n == 0) continue;
        uint64_t& h = high[c.items[i].name];
        require(ra.items[i].first == h + 1);
        h = ra.items[i].first + c.items[i].n - 1;
        require(a.find(c.items[i].name)->last == h);
      }
    } else if (c.kind == Command::Kind::kFloor && ra.status == Status::kOk) {
      uint64_t& h = high[c.name];
      require(ra.last >= h);
      h = ra.last;
    } else if (c.kind == Command::Kind::kReserve && ra.status == Status::kOk) {
      // A reservation starts right after everything claimed before, and never lowers.
      require(ra.items.size() == 1 && rb.items.size() == 1 && ra.items[0].first == rb.items[0].first);
      uint64_t& h = high[c.name];
      if (ra.items[0].status == Status::kOk) require(ra.items[0].first == h + 1);
      require(ra.last >= h && ra.last == a.find(c.name)->last);
      require(a.find(c.name)->reserved <= ra.last);
      h = ra.last;
    } else if ((c.kind == Command::Kind::kCreate || c.kind == Command::Kind::kCreateWindow) &&
               ra.status == Status::kOk) {
      high[c.name] = ra.last;
      require(a.find(c.name)->mode ==
              (c.kind == Command::Kind::kCreateWindow ? Mode::kWindow : Mode::kDense));
    } else if (c.kind == Command::Kind::kDrop && ra.status == Status::kOk) {
      high.erase(c.name);
    }
  }
  require(a.encode_snapshot() == b.encode_snapshot());
  return 0;
}
