// Test-only certificates, made in memory with OpenSSL (no openssl CLI, no files unless asked):
// a CA, and leaves it signs with chosen names and validity. Used by the tls unit tests and the
// TLS fuzzer. Never for production keys (P-256, a fixed serial per call, no protection).
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace ticketd::tls::testing {

struct KeyCert {
  std::string key_pem;
  std::string cert_pem;
  EVP_PKEY* key = nullptr;  // kept for signing leaves (a CA); freed with the process
  X509* cert = nullptr;
};

inline std::string to_pem(X509* cert) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, cert);
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  std::string s(p, static_cast<size_t>(n));
  BIO_free(b);
  return s;
}

inline std::string to_pem(EVP_PKEY* key) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  std::string s(p, static_cast<size_t>(n));
  BIO_free(b);
  return s;
}

inline void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) throw std::runtime_error("bad extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// `ca` null: a self-signed CA named `cn`. Otherwise a leaf signed by `ca` with subjectAltName
// `san` (e.g. "URI:ticketd:node:1,IP:127.0.0.1"), valid from now+from_days to now+to_days.
inline KeyCert make_cert(const KeyCert* ca, const std::string& cn, const std::string& san = "",
                         long from_days = -1, long to_days = 30) {
  static long serial = 1;
  KeyCert kc;
  kc.key = EVP_EC_gen("P-256");
  if (kc.key == nullptr) throw std::runtime_error("EVP_EC_gen failed");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_time_adj_ex(X509_getm_notBefore(x), static_cast<int>(from_days), 0, nullptr);
  X509_time_adj_ex(X509_getm_notAfter(x), static_cast<int>(to_days), 0, nullptr);
  X509_set_pubkey(x, kc.key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* issuer = ca == nullptr ? x : ca->cert;
  X509_set_issuer_name(x, X509_get_subject_name(issuer));
  if (ca == nullptr) {
    add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
    if (!san.empty()) add_ext(x, issuer, NID_subject_alt_name, san.c_str());
  }
  if (X509_sign(x, ca == nullptr ? kc.key : ca->key, EVP_sha256()) == 0) {
    throw std::runtime_error("X509_sign failed");
  }
  kc.cert = x;
  kc.key_pem = to_pem(kc.key);
  kc.cert_pem = to_pem(x);
  return kc;
}

inline void write_file(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error("cannot write " + path);
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

}  // namespace ticketd::tls::testing
