#include "ticketd/auth/digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "ticketd/base/check.h"

namespace ticketd::auth {

Digest sha256(std::string_view data) {
  Digest d{};
  unsigned int len = 0;
  int ok = EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr);
  // Fails only when the library itself is broken (no SHA-256 provider): nothing to serve.
  TICKETD_CHECK(ok == 1 && len == d.size());
  return d;
}

Digest hmac_sha256(std::string_view key, std::string_view data) {
  Digest d{};
  unsigned int len = 0;
  // HMAC's key pointer may not be null even for an empty key.
  static const unsigned char kEmpty = 0;
  const void* k = key.empty() ? static_cast<const void*>(&kEmpty) : key.data();
  unsigned char* r = HMAC(EVP_sha256(), k, static_cast<int>(key.size()),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                          d.data(), &len);
  TICKETD_CHECK(r != nullptr && len == d.size());
  return d;
}

bool equal_constant_time(const Digest& a, const Digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string to_hex(const Digest& d) {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(d.size() * 2);
  for (uint8_t b : d) {
    s += kHex[b >> 4];
    s += kHex[b & 15];
  }
  return s;
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool parse_hex_digest(std::string_view hex, Digest* out) {
  if (hex.size() != out->size() * 2) return false;
  Digest d{};
  for (size_t i = 0; i < d.size(); ++i) {
    int hi = hex_value(hex[2 * i]);
    int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    d[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  *out = d;
  return true;
}

void random_bytes(void* p, size_t n) {
  int ok = RAND_bytes(static_cast<unsigned char*>(p), static_cast<int>(n));
  TICKETD_CHECK_MSG(ok == 1, "the random number generator failed");
}

void wipe(void* bytes, size_t n) {
  if (n > 0) OPENSSL_cleanse(bytes, n);
}

void wipe(std::string& secret) {
  if (!secret.empty()) OPENSSL_cleanse(secret.data(), secret.size());
  secret.clear();
}

}  // namespace ticketd::auth
