#include "ticketd/tickets/state_machine.h"

#include <xxhash.h>

#include <cstring>

#include "ticketd/base/check.h"
#include "ticketd/tickets/bugs.h"

namespace ticketd::tickets {

#ifdef TICKETD_TICKETS_BUGS
namespace testing {
Bugs bugs;
}
#define TICKETD_TICKETS_BUG(name) (testing::bugs.name)
#else
#define TICKETD_TICKETS_BUG(name) false
#endif

namespace {

constexpr uint8_t kCommandVersion = 1;
// 1 was the bare 8-byte counter of earlier builds; 2 had no mode, window or reservation.
constexpr uint8_t kSnapshotVersion = 3;
constexpr uint8_t kSnapshotVersionNoMode = 2;

void put_u8(std::string* o, uint8_t v) { o->push_back(static_cast<char>(v)); }
// Little-endian fields, appended in one step (entries carry one name and count per sequence:
// byte-by-byte push_back showed up in per-request instruction counts).
void put_le(std::string* o, uint64_t v, int bytes) {
  char b[8];
  for (int i = 0; i < bytes; ++i) b[i] = static_cast<char>(v >> (8 * i));
  o->append(b, static_cast<size_t>(bytes));
}
void put_u16(std::string* o, uint16_t v) { put_le(o, v, 2); }
void put_u32(std::string* o, uint32_t v) { put_le(o, v, 4); }
void put_u64(std::string* o, uint64_t v) { put_le(o, v, 8); }
void put_name(std::string* o, const std::string& name) {
  TICKETD_CHECK(name.size() <= kMaxNameBytes);
  put_u16(o, static_cast<uint16_t>(name.size()));
  o->append(name);
}
void put_checksum(std::string* o) { put_u64(o, XXH3_64bits(o->data(), o->size())); }

uint64_t load_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

// Reads fixed-width fields; any read past the end makes ok() false.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  uint64_t u(int bytes) {
    if (!ok_ || in_.size() - pos_ < static_cast<size_t>(bytes)) {
      ok_ = false;
      return 0;
    }
    uint64_t v = load_le(in_.data() + pos_, bytes);
    pos_ += bytes;
    return v;
  }
  // A name that could never name a sequence is refused here, so every decoded name
  // encodes again.
  bool name(std::string* out) {
    size_t n = u(2);
    if (!ok_ || n > kMaxNameBytes || n > in_.size() - pos_) return ok_ = false;
    out->assign(in_.data() + pos_, n);
    pos_ += n;
    if (!name_ok(*out)) return ok_ = false;
    return true;
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }

 private:
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Splits off and verifies the trailing checksum; "" on success.
std::string verified_body(std::string_view in, std::string_view* body) {
  if (in.size() < 9) return "too short";
  *body = in.substr(0, in.size() - 8);
  if (load_le(in.data() + body->size(), 8) != XXH3_64bits(body->data(), body->size())) {
    return "checksum mismatch";
  }
  return "";
}

}  // namespace

bool name_ok(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  // Printable ASCII without space: '!' (0x21) to '~' (0x7e), one compare per byte.
  for (char ch : name) {
    if (static_cast<unsigned char>(static_cast<unsigned char>(ch) - 0x21) > 0x5d) return false;
  }
  return true;
}

std::string check_name(std::string_view name) {
  if (name_ok(name)) return "";
  if (name.empty()) return "empty sequence name";
  if (name.size() > kMaxNameBytes) {
    return "sequence name longer than " + std::to_string(kMaxNameBytes) + " bytes";
  }
  for (char ch : name) {
    if (ch <= ' ' || ch > '~') return "sequence name has a space or control character";
  }
  return "";
}

Command Command::allocate(std::vector<Item> items) {
  Command c;
  c.kind = Kind::kAllocate;
  c.items = std::move(items);
  return c;
}
Command Command::create(std::string name, uint64_t first) {
  Command c;
  c.kind = Kind::kCreate;
  c.name = std::move(name);
  c.value = first;
  return c;
}
Command Command::create_window(std::string name, uint64_t first, uint64_t window) {
  Command c = create(std::move(name), first);
  c.kind = Kind::kCreateWindow;
  c.window = window;
  return c;
}
Command Command::reserve(std::string name, uint64_t up_to) {
  Command c;
  c.kind = Kind::kReserve;
  c.name = std::move(name);
  c.value = up_to;
  return c;
}
Command Command::drop(std::string name) {
  Command c;
  c.kind = Kind::kDrop;
  c.name = std::move(name);
  return c;
}
Command Command::floor(std::string name, uint64_t value) {
  Command c;
  c.kind = Kind::kFloor;
  c.name = std::move(name);
  c.value = value;
  return c;
}

std::string encode(const Command& c) {
  std::string o;
  if (c.kind == Command::Kind::kAllocate && c.items.size() == 1 &&
      c.items[0].name == kDefaultSequence) {
    // The hot path: every TICKET of the default sequence. The compact form is the earlier
    // builds' entry (8 bytes, so a WAL record stays 40 bytes); the WAL record and the peer
    // codec checksum it.
    put_u64(&o, c.items[0].n);
    return o;
  }
  put_u8(&o, kCommandVersion);
  put_u8(&o, static_cast<uint8_t>(c.kind));
  if (c.kind == Command::Kind::kAllocate) {
    TICKETD_CHECK(c.items.size() <= kMaxItemsPerEntry);
    size_t bytes = 2 + 4 + 8;  // version, kind, count, checksum
    for (const Command::Item& it : c.items) bytes += 2 + it.name.size() + 8;
    o.reserve(bytes);  // one allocation, not a doubling per few items
    put_u32(&o, static_cast<uint32_t>(c.items.size()));
    for (const Command::Item& it : c.items) {
      put_name(&o, it.name);
      put_u64(&o, it.n);
    }
  } else {
    put_name(&o, c.name);
    put_u64(&o, c.value);
    if (c.kind == Command::Kind::kCreateWindow) put_u64(&o, c.window);
  }
  put_checksum(&o);
  return o;
}

std::string decode(std::string_view in, Command* out) {
  if (in.size() == 8) {
    // The entry of builds before sequences existed: a bare u64, Allocate{default, n}.
    *out = Command::allocate({{std::string(kDefaultSequence), load_le(in.data(), 8)}});
    return "";
  }
  std::string_view body;
  std::string err = verified_body(in, &body);
  if (!err.empty()) return err;
  Reader r(body);
  if (r.u(1) != kCommandVersion) return "unknown command version";
  Command c;
  uint64_t kind = r.u(1);
  if (kind < 1 || kind > 6) return "unknown command kind";
  c.kind = static_cast<Command::Kind>(kind);
  if (c.kind == Command::Kind::kAllocate) {
    uint64_t n = r.u(4);
    if (!r.ok() || n == 0 || n > kMaxItemsPerEntry) return "bad item count";
    // Each item is at least 2 + 1 + 8 bytes: a count past what the body holds is refused
    // before anything is reserved.
    if (n > body.size() / 11) return "item count past the entry's end";
    c.items.resize(n);
    for (Command::Item& it : c.items) {
      if (!r.name(&it.name)) return "truncated or bad sequence name";
      it.n = r.u(8);
    }
  } else {
    if (!r.name(&c.name)) return "truncated or bad sequence name";
    c.value = r.u(8);
    if (c.kind == Command::Kind::kCreateWindow) c.window = r.u(8);
  }
  if (!r.ok()) return "truncated";
  if (!r.done()) return "trailing bytes";
  *out = std::move(c);
  return "";
}

const char* to_string(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kNoSuchSequence: return "no such sequence";
    case Status::kExists: return "sequence exists";
    case Status::kExhausted: return "sequence exhausted";
    case Status::kInvalid: return "invalid";
  }
  return "?";
}

const char* to_string(Mode m) { return m == Mode::kWindow ? "window" : "dense"; }

StateMachine::StateMachine(const Options& opts) : opts_(opts) {
  if (opts_.default_mode == Mode::kWindow && opts_.default_window == 0) {
    opts_.default_window = kDefaultWindow;
  }
  seqs_.emplace(std::string(kDefaultSequence), default_sequence(0, 0));
}

Sequence StateMachine::default_sequence(uint64_t last, uint64_t issued) const {
  Sequence s;
  s.last = last;
  s.issued = issued;
  s.mode = opts_.default_mode;
  s.window = opts_.default_mode == Mode::kWindow ? opts_.default_window : 0;
  return s;
}

const Sequence* StateMachine::find(std::string_view name) const {
  auto it = seqs_.find(name);
  return it == seqs_.end() ? nullptr : &it->second;
}

ApplyResult StateMachine::apply(uint64_t index, const Command& c) {
  // The driver applies committed entries once each, in log order.
  TICKETD_CHECK(index > applied_index_);
  applied_index_ = index;
  ApplyResult res;
  auto seq = [&](const std::string& name) -> Sequence* {
    auto it = seqs_.find(name);
    return it == seqs_.end() ? nullptr : &it->second;
  };
  switch (c.kind) {
    case Command::Kind::kAllocate:
      res.items.reserve(c.items.size());
      for (const Command::Item& it : c.items) {
        ItemResult ir;
        Sequence* s = seq(it.name);
        if (s == nullptr) {
          ir.status = Status::kNoSuchSequence;
        } else if (it.n > UINT64_MAX - s->last) {
          ir.status = Status::kExhausted;
        } else if (TICKETD_TICKETS_BUG(allocate_ignores_floor) && s->issued < s->last) {
          ir.first = s->issued + 1;
          s->last = s->issued + it.n;
          s->issued += it.n;
        } else {
          ir.first = s->last + 1;
          s->last += it.n;
          s->issued += it.n;
        }
        res.items.push_back(ir);
      }
      break;
    case Command::Kind::kCreate:
    case Command::Kind::kCreateWindow: {
      bool window = c.kind == Command::Kind::kCreateWindow;
      if (!check_name(c.name).empty() || c.value == 0 ||
          (window && (c.window == 0 || c.window > kMaxWindow))) {
        res.status = Status::kInvalid;
      } else if (seq(c.name) != nullptr) {
        res.status = Status::kExists;
        res.last = seq(c.name)->last;
      } else {
        Sequence s;
        s.last = c.value - 1;
        s.created_index = index;
        s.mode = window ? Mode::kWindow : Mode::kDense;
        s.window = window ? c.window : 0;
        seqs_.emplace(c.name, s);
        res.last = c.value - 1;
      }
      break;
    }
    case Command::Kind::kReserve:
      // Claims (last, up_to] for the leader that proposed it; whatever claimed past up_to
      // meanwhile (a Floor, an Allocate) shrinks it, so two claims never overlap. Applied
      // alike in either mode.
      if (Sequence* s = seq(c.name)) {
        ItemResult ir;
        if (s->last == UINT64_MAX) {
          ir.status = Status::kExhausted;
        } else {
          ir.first = s->last + 1;  // the range is [first, up_to]: empty if up_to <= last
          if (c.value > s->last) s->last = c.value;
          if (c.value > s->reserved) s->reserved = c.value;
        }
        res.last = s->last;
        res.items.push_back(ir);
      } else {
        res.status = Status::kNoSuchSequence;
      }
      break;
    case Command::Kind::kDrop:
      if (c.name == kDefaultSequence) {
        res.status = Status::kInvalid;
      } else if (seqs_.erase(c.name) == 0) {
        res.status = Status::kNoSuchSequence;
      }
      break;
    case Command::Kind::kFloor:
      if (Sequence* s = seq(c.name)) {
        if (c.value > s->last) s->last = c.value;  // never lowers
        res.last = s->last;
      } else {
        res.status = Status::kNoSuchSequence;
      }
      break;
  }
  return res;
}

std::string StateMachine::encode_snapshot() const {
  std::string o;
  put_u8(&o, kSnapshotVersion);
  put_u32(&o, static_cast<uint32_t>(seqs_.size()));
  for (const auto& [name, s] : seqs_) {
    put_name(&o, name);
    put_u64(&o, TICKETD_TICKETS_BUG(snapshot_forgets_floors) ? s.issued : s.last);
    put_u64(&o, s.issued);
    put_u64(&o, s.created_index);
    put_u8(&o, static_cast<uint8_t>(s.mode));
    put_u64(&o, s.window);
    put_u64(&o, s.reserved);
  }
  put_checksum(&o);
  return o;
}

std::string StateMachine::decode_snapshot(std::string_view in, uint64_t index) {
  std::map<std::string, Sequence, std::less<>> seqs;
  if (in.size() == 8) {
    // Snapshot data of builds before sequences existed: the default counter alone.
    uint64_t last = load_le(in.data(), 8);
    seqs.emplace(std::string(kDefaultSequence), default_sequence(last, last));
  } else {
    std::string_view body;
    std::string err = verified_body(in, &body);
    if (!err.empty()) return err;
    Reader r(body);
    uint64_t version = r.u(1);
    if (version != kSnapshotVersion && version != kSnapshotVersionNoMode) {
      return "unknown snapshot version";
    }
    bool modes = version == kSnapshotVersion;
    uint64_t n = r.u(4);
    if (!r.ok() || n > body.size() / (modes ? 44 : 27)) return "bad sequence count";
    for (uint64_t i = 0; i < n; ++i) {
      std::string name;
      if (!r.name(&name)) return "truncated or bad sequence name";
      Sequence s;
      s.last = r.u(8);
      s.issued = r.u(8);
      s.created_index = r.u(8);
      if (modes) {
        uint64_t mode = r.u(1);
        s.window = r.u(8);
        s.reserved = r.u(8);
        if (!r.ok()) return "truncated";
        if (mode > 1) return "unknown sequence mode";
        s.mode = static_cast<Mode>(mode);
        // One state, one encoding: a dense sequence has no window, a window one a valid one.
        if (s.mode == Mode::kDense ? s.window != 0 : (s.window == 0 || s.window > kMaxWindow)) {
          return "bad window size";
        }
        if (s.reserved > s.last) return "reservation above the last ticket";
      } else if (name == kDefaultSequence) {
        Sequence d = default_sequence(s.last, s.issued);
        d.created_index = s.created_index;
        s = d;
      }
      if (!r.ok()) return "truncated";
      // Sorted and unique, as encode_snapshot writes them: one state, one encoding.
      if (!seqs.empty() && !(seqs.rbegin()->first < name)) return "sequence names out of order";
      seqs.emplace_hint(seqs.end(), std::move(name), s);
    }
    if (!r.done()) return "trailing bytes";
    if (seqs.find(kDefaultSequence) == seqs.end()) return "no default sequence";
  }
  seqs_ = std::move(seqs);
  applied_index_ = index;
  return "";
}

}  // namespace ticketd::tickets
