#include "ticketd/tls/context.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ticketd::tls {

namespace {

std::string openssl_errors() {
  std::string s;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!s.empty()) s += "; ";
    s += buf;
  }
  return s.empty() ? "unknown OpenSSL error" : s;
}

// Readable at all? (OpenSSL's own message for a missing file is "system lib".)
bool readable(const char* flag, const std::string& path, std::string* err) {
  if (path.empty()) {
    *err = std::string(flag) + " is required with TLS";
    return false;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = std::string("cannot read ") + flag + " " + path + ": " + std::strerror(errno);
    return false;
  }
  ::close(fd);
  return true;
}

std::string asn1_time_text(const ASN1_TIME* t) {
  BIO* b = BIO_new(BIO_s_mem());
  if (b == nullptr) return "?";
  ASN1_TIME_print(b, t);
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  std::string s(p, n > 0 ? static_cast<size_t>(n) : 0);
  BIO_free(b);
  return s;
}

std::string subject_text(X509* cert) {
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof(buf));
  return buf;
}

// An encrypted key would make OpenSSL prompt on the terminal: refuse instead.
int no_password(char*, int, int, void*) { return 0; }

SSL_CTX* make_ctx(bool accept, const Files& f, std::string* err) {
  SSL_CTX* ctx = SSL_CTX_new(accept ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) {
    *err = "cannot create a TLS context: " + openssl_errors();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_default_passwd_cb(ctx, &no_password);
  // No session tickets or cache: nothing per client outlives its connection, and the server
  // writes nothing after the handshake that the client did not ask for.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (accept) SSL_CTX_set_num_tickets(ctx, 0);
  // TLS 1.3 suites, the server's order first: AES-128-GCM (what most clients list, and the
  // cheapest with AES-NI), then OpenSSL's defaults. TLS 1.2 keeps OpenSSL's default list.
  SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                "TLS_CHACHA20_POLY1305_SHA256");
  SSL_CTX_set_verify_depth(ctx, 8);
  if (SSL_CTX_use_certificate_chain_file(ctx, f.cert_file.c_str()) != 1) {
    *err = "--tls-cert-file " + f.cert_file + ": not a PEM certificate (" + openssl_errors() + ")";
    SSL_CTX_free(ctx);
    return nullptr;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, f.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      *err = "--tls-key-file " + f.key_file + " is not the key of the certificate in " +
             "--tls-cert-file " + f.cert_file;
    } else {
      *err = "--tls-key-file " + f.key_file + ": not an unencrypted PEM private key (" +
             openssl_errors() + ")";
    }
    SSL_CTX_free(ctx);
    return nullptr;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    *err = "--tls-key-file " + f.key_file + " is not the key of the certificate in --tls-cert-file " +
           f.cert_file;
    SSL_CTX_free(ctx);
    return nullptr;
  }
  if (SSL_CTX_load_verify_locations(ctx, f.ca_cert_file.c_str(), nullptr) != 1) {
    *err = "--tls-ca-cert-file " + f.ca_cert_file + ": no PEM certificate in it (" +
           openssl_errors() + ")";
    SSL_CTX_free(ctx);
    return nullptr;
  }
  if (accept) {
    // The CAs a server names in its certificate request (clients pick their certificate by it).
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(f.ca_cert_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
  }
  ERR_clear_error();
  return ctx;
}

}  // namespace

ContextSet::~ContextSet() {
  SSL_CTX_free(accept_);
  SSL_CTX_free(connect_);
}

std::shared_ptr<const ContextSet> ContextSet::load(const Files& f, std::string* err,
                                                   std::string* warning) {
  if (warning != nullptr) warning->clear();
  if (!readable("--tls-cert-file", f.cert_file, err) ||
      !readable("--tls-key-file", f.key_file, err) ||
      !readable("--tls-ca-cert-file", f.ca_cert_file, err)) {
    return nullptr;
  }
  ERR_clear_error();
  std::shared_ptr<ContextSet> set(new ContextSet());
  set->accept_ = make_ctx(true, f, err);
  if (set->accept_ == nullptr) return nullptr;
  set->connect_ = make_ctx(false, f, err);
  if (set->connect_ == nullptr) return nullptr;
  X509* cert = SSL_CTX_get0_certificate(set->accept_);
  if (cert == nullptr) {
    *err = "--tls-cert-file " + f.cert_file + ": no certificate in it";
    return nullptr;
  }
  set->subject_ = subject_text(cert);
  set->not_after_ = asn1_time_text(X509_get0_notAfter(cert));
  // A certificate outside its validity would be refused by every client and peer: say so now
  // rather than by a failed handshake each time.
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
    *err = "--tls-cert-file " + f.cert_file + ": the certificate expired (" + set->not_after_ + ")";
    return nullptr;
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0) {
    *err = "--tls-cert-file " + f.cert_file + ": the certificate is not valid yet (from " +
           asn1_time_text(X509_get0_notBefore(cert)) + ")";
    return nullptr;
  }
  struct stat st{};
  if (warning != nullptr && ::stat(f.key_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    *warning = "--tls-key-file " + f.key_file + " is readable by group or others (chmod 600 it)";
  }
  return set;
}

bool Contexts::load(std::string* err, std::string* warning) {
  std::shared_ptr<const ContextSet> set = ContextSet::load(files_, err, warning);
  if (!set) return false;
  std::lock_guard<std::mutex> g(mu_);
  current_ = std::move(set);
  loads_++;
  return true;
}

std::shared_ptr<const ContextSet> Contexts::current() const {
  std::lock_guard<std::mutex> g(mu_);
  return current_;
}

uint64_t Contexts::loads() const {
  std::lock_guard<std::mutex> g(mu_);
  return loads_;
}

}  // namespace ticketd::tls
