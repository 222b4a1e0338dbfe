// libFuzzer target for ticketd::raft::decode (the peer wire codec).
// Input: [control byte][encoded message]. With control bit 0 set, the harness rewrites the
// trailing xxh3 so mutations reach the body decoder instead of dying at the checksum.
// Traps on: a decoded message whose re-encoding does not decode to an equal Message, or whose
// re-encoding is not stable (encode(decode(encode(m))) != encode(m)), or a decode that
// accepted something over the codec's own size bounds.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "ticketd/raft/codec.h"

namespace {

void require(bool cond) {
  if (!cond) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  if (size < 1) return 0;
  uint8_t ctl = raw[0];
  std::string in(reinterpret_cast<const char*>(raw + 1), size - 1);
  if ((ctl & 1) && in.size() >= 9) {
    uint64_t sum = XXH3_64bits(in.data(), in.size() - 8);  // LE on this (x86/arm64 LE) host
    std::memcpy(in.data() + in.size() - 8, &sum, 8);
  }
  using namespace ticketd::raft;
  Message m;
  std::string err = decode(in, &m);
  if (!err.empty()) return 0;

  require(m.entries.size() <= kMaxEntriesPerMessage);
  for (const Entry& e : m.entries) require(e.data.size() <= kMaxDataBytes);
  if (m.snapshot) {
    require(m.snapshot->data.size() <= kMaxDataBytes);
    require(m.snapshot->configuration.servers.size() <= kMaxServers);
    for (const Server& s : m.snapshot->configuration.servers) {
      require(s.context.size() <= kMaxContextBytes);
    }
  }

  std::string once;
  encode(m, &once);
  Message again;
  require(decode(once, &again).empty());
  require(again == m);
  std::string twice;
  encode(again, &twice);
  require(twice == once);
  return 0;
}
