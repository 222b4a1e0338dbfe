// auth: digests, MACs and comparisons for passwords and secrets, from OpenSSL's libcrypto.
// Promises: SHA-256 and HMAC-SHA256 as the library computes them; comparisons whose time
// does not depend on where two values differ. Never: a socket, a file, a thread or a clock;
// never crypto written by hand.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ticketd::auth {

using Digest = std::array<uint8_t, 32>;  // a SHA-256 or HMAC-SHA256 value

Digest sha256(std::string_view data);
Digest hmac_sha256(std::string_view key, std::string_view data);

// Constant time in the contents (CRYPTO_memcmp). For strings of different lengths it
// answers false at once: compare digests, not secrets, when the length is itself secret.
bool equal_constant_time(const Digest& a, const Digest& b);
bool equal_constant_time(std::string_view a, std::string_view b);

std::string to_hex(const Digest& d);  // 64 lower-case hex digits
// 64 hex digits (either case) into *out; false for anything else.
bool parse_hex_digest(std::string_view hex, Digest* out);

// Fills [p, p+n) from OpenSSL's CSPRNG (RAND_bytes: nonces). Aborts if the generator
// cannot be seeded: a predictable nonce would make a recorded handshake replayable.
void random_bytes(void* p, size_t n);

// Overwrites a secret's bytes (OPENSSL_cleanse: not optimised away), then empties it.
void wipe(std::string& secret);
void wipe(void* bytes, size_t n);

}  // namespace ticketd::auth
