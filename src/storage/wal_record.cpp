#include "ticketd/storage/wal_record.h"

#include <xxhash.h>

#include <cstring>

namespace ticketd::storage {

uint64_t wal_record_checksum(const std::byte* header24, std::span<const std::byte> payload) {
  XXH64_hash_t seed = XXH3_64bits(header24, kWalChecksumOffset);
  return XXH3_64bits_withSeed(payload.data(), payload.size(), seed);
}

size_t encode_wal_record(std::byte* out, uint8_t type, uint64_t term, uint64_t index,
                         std::span<const std::byte> payload) {
  uint32_t len = static_cast<uint32_t>(payload.size());
  std::memcpy(out + kWalLengthOffset, &len, 4);
  out[kWalTypeOffset] = std::byte{type};
  std::memset(out + kWalReservedOffset, 0, 3);
  std::memcpy(out + kWalTermOffset, &term, 8);
  std::memcpy(out + kWalIndexOffset, &index, 8);
  if (!payload.empty()) std::memcpy(out + kWalHeaderBytes, payload.data(), payload.size());
  uint64_t sum = wal_record_checksum(out, payload);
  std::memcpy(out + kWalChecksumOffset, &sum, 8);
  return kWalHeaderBytes + payload.size();
}

WalDecode decode_wal_record(std::span<const std::byte> in, size_t max_payload, WalRecordView* out) {
  if (in.size() < kWalHeaderBytes) {
    for (std::byte b : in) {
      if (b != std::byte{0}) return WalDecode::kTorn;
    }
    return WalDecode::kEnd;
  }
  const std::byte* h = in.data();
  bool all_zero = true;
  for (size_t i = 0; i < kWalHeaderBytes; ++i) {
    if (h[i] != std::byte{0}) {
      all_zero = false;
      break;
    }
  }
  if (all_zero) return WalDecode::kEnd;
  uint32_t len;
  std::memcpy(&len, h + kWalLengthOffset, 4);
  if (h[kWalReservedOffset + 1] != std::byte{0} || h[kWalReservedOffset + 2] != std::byte{0} ||
      len > max_payload) {
    return WalDecode::kCorrupt;
  }
  if (in.size() - kWalHeaderBytes < len) return WalDecode::kTorn;
  std::span<const std::byte> payload = in.subspan(kWalHeaderBytes, len);
  uint64_t stored;
  std::memcpy(&stored, h + kWalChecksumOffset, 8);
  if (stored != wal_record_checksum(h, payload)) return WalDecode::kCorrupt;
  if (static_cast<uint8_t>(h[kWalFormatOffset]) != kWalFormat) return WalDecode::kNewerFormat;
  out->type = static_cast<uint8_t>(h[kWalTypeOffset]);
  std::memcpy(&out->term, h + kWalTermOffset, 8);
  std::memcpy(&out->index, h + kWalIndexOffset, 8);
  out->payload = payload;
  out->total_bytes = kWalHeaderBytes + len;
  return WalDecode::kOk;
}

const char* wal_decode_name(WalDecode d) {
  switch (d) {
    case WalDecode::kOk:
      return "ok";
    case WalDecode::kEnd:
      return "end";
    case WalDecode::kTorn:
      return "torn record";
    case WalDecode::kCorrupt:
      return "corrupt record";
    case WalDecode::kNewerFormat:
      return "record of a newer format";
  }
  return "?";
}

}  // namespace ticketd::storage
