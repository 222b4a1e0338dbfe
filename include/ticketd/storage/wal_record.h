// The WAL record format: a fixed 32-byte little-endian header {u32 length, u8 type, u8 format,
// u8 reserved[2],
// u64 term, u64 index, u64 checksum} followed by `length` payload bytes. Decoding never trusts a
// byte it has not checksummed; an all-zero header marks the end of a segment's records.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace ticketd::storage {

static_assert(std::endian::native == std::endian::little,
              "the WAL layout is little-endian and encoded by memcpy");

inline constexpr size_t kWalHeaderBytes = 32;
// Byte offsets inside the header.
inline constexpr size_t kWalLengthOffset = 0;
inline constexpr size_t kWalTypeOffset = 4;
inline constexpr size_t kWalReservedOffset = 5;
// The header's first "reserved" byte is the record's format version: 0, the only one so far
// (every release wrote 0 there). A record of a later format, whose checksum holds, is refused
// with kNewerFormat, never cut off as damage.
inline constexpr size_t kWalFormatOffset = kWalReservedOffset;
inline constexpr uint8_t kWalFormat = 0;
inline constexpr size_t kWalTermOffset = 8;
inline constexpr size_t kWalIndexOffset = 16;
inline constexpr size_t kWalChecksumOffset = 24;

// checksum = XXH3_64bits_withSeed(payload, length, seed = XXH3_64bits(header[0..24))):
// covers every header field except the checksum itself, then the payload, without needing the
// two to be contiguous or the input to be writable.
uint64_t wal_record_checksum(const std::byte* header24, std::span<const std::byte> payload);

inline size_t wal_record_bytes(size_t payload_len) { return kWalHeaderBytes + payload_len; }

// Writes header + payload to `out` (which must hold wal_record_bytes(payload.size()) bytes).
// Returns the number of bytes written. Allocates nothing.
size_t encode_wal_record(std::byte* out, uint8_t type, uint64_t term, uint64_t index,
                         std::span<const std::byte> payload);

struct WalRecordView {
  uint8_t type = 0;
  uint64_t term = 0;
  uint64_t index = 0;
  std::span<const std::byte> payload;  // points into the decoded input
  size_t total_bytes = 0;              // header + payload
};

enum class WalDecode {
  kOk,       // a complete record with a valid checksum
  kEnd,      // an all-zero header: no record starts here (clean end or zero padding)
  kTorn,     // input ends inside the header or the payload
  kCorrupt,  // bad reserved bytes, absurd length, or checksum mismatch
  kNewerFormat,  // an intact record of a later format version (written by a newer release)
};

// Decodes the record at the start of `in`. `max_payload` bounds the length field.
WalDecode decode_wal_record(std::span<const std::byte> in, size_t max_payload, WalRecordView* out);

const char* wal_decode_name(WalDecode d);

}  // namespace ticketd::storage
