// Binary wire codec for raft::Message: [version u8][body][xxh3-64 of version+body, LE u64].
// It promises that decode() rejects truncated, oversized or corrupt input with an error text
// and never crashes or allocates beyond the stated bounds; it never does I/O itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ticketd/raft/types.h"

namespace ticketd::raft {

inline constexpr uint8_t kCodecVersion = 1;
inline constexpr size_t kMaxEntriesPerMessage = 1u << 16;
inline constexpr size_t kMaxDataBytes = 16u << 20;      // one entry payload or snapshot data
inline constexpr size_t kMaxServers = 64;               // servers in one configuration
inline constexpr size_t kMaxContextBytes = 4096;        // one server's context
inline constexpr size_t kMaxMessageBytes = 64u << 20;   // whole encoded message

// Appends the encoding of m to *out (does not clear it).
void encode(const Message& m, std::string* out);

// Decodes exactly one message occupying all of `in`. Returns an empty string on success,
// otherwise a short error text (and *out is unspecified).
std::string decode(std::string_view in, Message* out);
inline std::string decode(std::span<const std::byte> in, Message* out) {
  return decode(std::string_view(reinterpret_cast<const char*>(in.data()), in.size()), out);
}

}  // namespace ticketd::raft
