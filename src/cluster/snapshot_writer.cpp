#include "snapshot_writer.h"

#include <cstring>

#include "ticketd/raft/node.h"

namespace ticketd::cluster {

namespace {

void put_u64(std::string* s, uint64_t v) { s->append(reinterpret_cast<const char*>(&v), 8); }
void put_u32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }
bool get_u64(std::string_view* s, uint64_t* v) {
  if (s->size() < 8) return false;
  std::memcpy(v, s->data(), 8);
  s->remove_prefix(8);
  return true;
}
bool get_u32(std::string_view* s, uint32_t* v) {
  if (s->size() < 4) return false;
  std::memcpy(v, s->data(), 4);
  s->remove_prefix(4);
  return true;
}

}  // namespace

std::string encode_snapshot(const raft::Snapshot& s) {
  std::string out;
  put_u64(&out, s.index);
  put_u64(&out, s.term);
  std::string conf = raft::encode_configuration(s.configuration);
  put_u32(&out, static_cast<uint32_t>(conf.size()));
  out += conf;
  put_u32(&out, static_cast<uint32_t>(s.data.size()));
  out += s.data;
  return out;
}

bool decode_snapshot(std::string_view in, raft::Snapshot* s) {
  uint32_t n = 0;
  if (!get_u64(&in, &s->index) || !get_u64(&in, &s->term) || !get_u32(&in, &n) || in.size() < n)
    return false;
  if (!raft::decode_configuration(in.substr(0, n), &s->configuration)) return false;
  in.remove_prefix(n);
  if (!get_u32(&in, &n) || in.size() != n) return false;
  s->data.assign(in);
  return true;
}

}  // namespace ticketd::cluster
