#include "ticketd/raft/codec.h"

#include <xxhash.h>

#include <cstring>

#include "ticketd/raft/node.h"

namespace ticketd::raft {
namespace {

// Layout (all integers little-endian, fixed width):
//   u8 version | u8 type | u8 flags (1 reject, 2 transfer, 4 has snapshot)
//   u64 from, to, term, log_term, index, commit, hint_index, hint_term
//   u32 entry count | entries: u64 term, u64 index, u8 type, u32 len, bytes
//   [snapshot: u64 index, u64 term, configuration, u32 len, bytes]
//   u64 xxh3-64 of every byte before it
// configuration: u32 count | servers: u64 id, u8 suffrage, u32 len, bytes
constexpr uint8_t kFlagReject = 1, kFlagTransfer = 2, kFlagSnapshot = 4;

void put_u8(std::string* out, uint8_t v) { out->push_back(static_cast<char>(v)); }
void put_u32(std::string* out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out->append(b, 4);
}
void put_u64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out->append(b, 8);
}
void put_bytes(std::string* out, std::string_view s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

void put_configuration(std::string* out, const Configuration& c) {
  put_u32(out, static_cast<uint32_t>(c.servers.size()));
  for (const Server& s : c.servers) {
    put_u64(out, s.id);
    put_u8(out, static_cast<uint8_t>(s.suffrage));
    put_bytes(out, s.context);
  }
}

// A bounds-checked cursor: every read fails (and stays failed) instead of running off the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  size_t remaining() const { return in_.size() - pos_; }
  const char* error() const { return error_; }
  void fail(const char* why) {
    if (ok_) error_ = why;
    ok_ = false;
  }

  uint8_t u8() {
    if (!need(1)) return 0;
    return static_cast<uint8_t>(in_[pos_++]);
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return v;
  }
  uint64_t u64() {
    if (!need(8)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += 8;
    return v;
  }
  bool skip(size_t n) {
    if (!need(n)) return false;
    pos_ += n;
    return true;
  }
  bool bytes(std::string* out, size_t max_len) {
    uint32_t n = u32();
    if (!ok_) return false;
    if (n > max_len) {
      fail("length over limit");
      return false;
    }
    if (!need(n)) return false;
    out->assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
  }

 private:
  bool need(size_t n) {
    if (!ok_) return false;
    if (remaining() < n) {
      fail("truncated");
      return false;
    }
    return true;
  }

  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
  const char* error_ = "";
};

bool read_configuration(Reader& r, Configuration* c) {
  uint32_t n = r.u32();
  if (!r.ok()) return false;
  if (n > kMaxServers) {
    r.fail("too many servers");
    return false;
  }
  c->servers.clear();
  c->servers.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    Server s;
    s.id = r.u64();
    uint8_t suffrage = r.u8();
    if (!r.ok()) return false;
    if (suffrage > static_cast<uint8_t>(Suffrage::kNonVoter)) {
      r.fail("bad suffrage");
      return false;
    }
    s.suffrage = static_cast<Suffrage>(suffrage);
    if (!r.bytes(&s.context, kMaxContextBytes)) return false;
    c->servers.push_back(std::move(s));
  }
  return true;
}

}  // namespace

std::string encode_configuration(const Configuration& c) {
  std::string out;
  put_configuration(&out, c);
  return out;
}

bool decode_configuration(std::string_view data, Configuration* out) {
  Reader r(data);
  if (!read_configuration(r, out)) return false;
  return r.remaining() == 0;
}

bool valid_configuration(const Configuration& c) {
  if (c.servers.size() > kMaxServers) return false;
  for (size_t i = 0; i < c.servers.size(); ++i) {
    const Server& s = c.servers[i];
    if (s.id == kNoId || s.suffrage > Suffrage::kNonVoter || s.context.size() > kMaxContextBytes)
      return false;
    for (size_t j = 0; j < i; ++j)
      if (c.servers[j].id == s.id) return false;
  }
  return true;
}

bool valid_encoded_configuration(std::string_view data) {
  Reader r(data);
  uint32_t n = r.u32();
  if (!r.ok() || n > kMaxServers) return false;
  uint64_t ids[kMaxServers];
  for (uint32_t i = 0; i < n; ++i) {
    ids[i] = r.u64();
    uint8_t suffrage = r.u8();
    uint32_t len = r.u32();
    if (!r.ok() || ids[i] == kNoId || suffrage > static_cast<uint8_t>(Suffrage::kNonVoter) ||
        len > kMaxContextBytes || !r.skip(len)) {
      return false;
    }
    for (uint32_t j = 0; j < i; ++j)
      if (ids[j] == ids[i]) return false;
  }
  return r.remaining() == 0;
}

void encode(const Message& m, std::string* out) {
  size_t start = out->size();
  put_u8(out, kCodecVersion);
  put_u8(out, static_cast<uint8_t>(m.type));
  uint8_t flags = (m.reject ? kFlagReject : 0) | (m.transfer ? kFlagTransfer : 0) |
                  (m.snapshot ? kFlagSnapshot : 0);
  put_u8(out, flags);
  put_u64(out, m.from);
  put_u64(out, m.to);
  put_u64(out, m.term);
  put_u64(out, m.log_term);
  put_u64(out, m.index);
  put_u64(out, m.commit);
  put_u64(out, m.hint_index);
  put_u64(out, m.hint_term);
  put_u32(out, static_cast<uint32_t>(m.entries.size()));
  for (const Entry& e : m.entries) {
    put_u64(out, e.term);
    put_u64(out, e.index);
    put_u8(out, static_cast<uint8_t>(e.type));
    put_bytes(out, e.data);
  }
  if (m.snapshot) {
    put_u64(out, m.snapshot->index);
    put_u64(out, m.snapshot->term);
    put_configuration(out, m.snapshot->configuration);
    put_bytes(out, m.snapshot->data);
  }
  put_u64(out, XXH3_64bits(out->data() + start, out->size() - start));
}

std::string decode(std::string_view in, Message* out) {
  if (in.size() > kMaxMessageBytes) return "message too large";
  if (in.size() < 1 + 8) return "truncated";
  if (static_cast<uint8_t>(in[0]) != kCodecVersion) return "unsupported codec version";
  std::string_view body = in.substr(0, in.size() - 8);
  {
    Reader sum(in.substr(in.size() - 8));
    if (sum.u64() != XXH3_64bits(body.data(), body.size())) return "checksum mismatch";
  }
  Reader r(body.substr(1));
  *out = Message{};
  uint8_t type = r.u8();
  uint8_t flags = r.u8();
  if (!r.ok()) return r.error();
  if (type >= kMessageTypeCount) return "unknown message type";
  if (flags & ~(kFlagReject | kFlagTransfer | kFlagSnapshot)) return "unknown flags";
  out->type = static_cast<MessageType>(type);
  out->reject = flags & kFlagReject;
  out->transfer = flags & kFlagTransfer;
  out->from = r.u64();
  out->to = r.u64();
  out->term = r.u64();
  out->log_term = r.u64();
  out->index = r.u64();
  out->commit = r.u64();
  out->hint_index = r.u64();
  out->hint_term = r.u64();
  uint32_t n = r.u32();
  if (!r.ok()) return r.error();
  if (n > kMaxEntriesPerMessage) return "too many entries";
  // Each entry needs at least 21 bytes: refuse counts the input cannot hold before reserving.
  if (static_cast<uint64_t>(n) * 21 > r.remaining()) return "truncated";
  out->entries.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    Entry e;
    e.term = r.u64();
    e.index = r.u64();
    uint8_t et = r.u8();
    if (!r.ok()) return r.error();
    if (et > static_cast<uint8_t>(EntryType::kConfChange)) return "unknown entry type";
    e.type = static_cast<EntryType>(et);
    if (!r.bytes(&e.data, kMaxDataBytes)) return r.error();
    out->entries.push_back(std::move(e));
  }
  if (flags & kFlagSnapshot) {
    Snapshot s;
    s.index = r.u64();
    s.term = r.u64();
    if (!read_configuration(r, &s.configuration)) return r.error();
    if (!r.bytes(&s.data, kMaxDataBytes)) return r.error();
    out->snapshot = std::move(s);
  }
  if (!r.ok()) return r.error();
  if (r.remaining() != 0) return "trailing bytes";
  return std::string();
}

}  // namespace ticketd::raft
