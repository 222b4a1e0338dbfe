#include "ticketd/tls/session.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <climits>
#include <cstring>

namespace ticketd::tls {

std::string node_uri(uint64_t node_id) { return "ticketd:node:" + std::to_string(node_id); }

namespace {
// SSL_get_error reads the thread's error queue, which must hold only the last call's errors.
// Every failure drains it (fail()), so on the data path it is empty: peeking costs a fifth
// of ERR_clear_error's walk over all sixteen slots (measured: ~220 instructions per ticket
// at c50 P16 went to clearing an empty queue before each call).
void clear_stale_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}
}  // namespace

Session::Session(ssl_ctx_st* ctx, Role role, PeerVerify verify) {
  ERR_clear_error();
  ssl_ = ctx != nullptr ? SSL_new(ctx) : nullptr;
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || rbio_ == nullptr || wbio_ == nullptr) {
    BIO_free(rbio_);
    BIO_free(wbio_);
    rbio_ = wbio_ = nullptr;
    fail("cannot create a TLS session", SSL_ERROR_SSL);
    return;
  }
  // An empty input BIO means "more to come" (WANT_READ), never EOF: the socket says EOF.
  BIO_set_mem_eof_return(rbio_, -1);
  BIO_set_mem_eof_return(wbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);  // ssl_ owns both now
  int mode = SSL_VERIFY_NONE;
  if (verify == PeerVerify::kOptional) mode = SSL_VERIFY_PEER;
  if (verify == PeerVerify::kRequired) mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  // A client always checks the server's certificate against the CA.
  if (role == Role::kConnect) mode = SSL_VERIFY_PEER;
  SSL_set_verify(ssl_, mode, nullptr);
  if (role == Role::kAccept) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
}

Session::~Session() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees both BIOs
}

void Session::fail(const char* what, int ssl_error) {
  if (failed_) return;
  failed_ = true;
  error_ = what;
  if (ssl_ != nullptr) {
    long v = SSL_get_verify_result(ssl_);
    if (v != X509_V_OK) {
      error_ += ": certificate verify failed: ";
      error_ += X509_verify_cert_error_string(v);
    }
  }
  std::string lib;
  while (unsigned long e = ERR_get_error()) {
    if (lib.size() > 512) continue;  // drain the queue, keep the text short
    const char* r = ERR_reason_error_string(e);
    if (!lib.empty()) lib += "; ";
    lib += r != nullptr ? r : "error " + std::to_string(e);
  }
  if (!lib.empty()) {
    error_ += ": ";
    error_ += lib;
  } else if (ssl_error == SSL_ERROR_SYSCALL) {
    error_ += ": unexpected end of the TLS stream";
  }
}

void Session::start() {
  if (failed_ || done_) return;
  ERR_clear_error();
  drive_handshake();
}

void Session::drive_handshake() {
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    done_ = true;
    return;
  }
  int e = SSL_get_error(ssl_, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  fail("TLS handshake failed", e);
}

bool Session::feed(const char* data, size_t len) {
  if (failed_) return false;
  clear_stale_errors();
  while (len > 0) {
    int chunk = static_cast<int>(len > INT_MAX ? INT_MAX : len);
    int n = BIO_write(rbio_, data, chunk);
    if (n <= 0) {
      fail("cannot buffer TLS input", SSL_ERROR_SSL);
      return false;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  if (!done_) drive_handshake();
  if (!failed_ && BIO_ctrl_pending(rbio_) > kMaxBufferedInput) {
    // The reader does not drain what it is given (or the peer sends a record larger than
    // TLS allows in pieces): refuse rather than buffer without bound.
    fail("too much unprocessed TLS input", SSL_ERROR_SSL);
  }
  return !failed_;
}

long Session::read(char* buf, size_t cap) {
  if (failed_) return -1;
  if (!done_ || peer_closed_ || cap == 0) return 0;
  clear_stale_errors();
  size_t got = 0;
  int rc = SSL_read_ex(ssl_, buf, cap, &got);
  if (rc == 1) return static_cast<long>(got);
  int e = SSL_get_error(ssl_, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  if (e == SSL_ERROR_ZERO_RETURN) {
    peer_closed_ = true;
    return 0;
  }
  fail("TLS read failed", e);
  return -1;
}

bool Session::write(std::string_view plaintext) {
  if (failed_ || !done_) return false;
  if (plaintext.empty()) return true;
  clear_stale_errors();
  size_t written = 0;
  // A memory BIO takes everything: one call encrypts the whole buffer (records of 16 KiB).
  int rc = SSL_write_ex(ssl_, plaintext.data(), plaintext.size(), &written);
  if (rc == 1 && written == plaintext.size()) return true;
  fail("TLS write failed", SSL_get_error(ssl_, rc));
  return false;
}

void Session::close_notify() {
  if (failed_ || !done_ || notified_) return;
  notified_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // writes the alert into the output BIO; we do not wait for the reply
  ERR_clear_error();
}

bool Session::has_input() const {
  if (failed_ || !done_ || peer_closed_) return false;
  return SSL_pending(ssl_) > 0 || BIO_ctrl_pending(rbio_) > 0;
}

size_t Session::ciphertext_bytes() const {
  return wbio_ == nullptr ? 0 : BIO_ctrl_pending(wbio_);
}

void Session::take_ciphertext(std::string* out) {
  if (wbio_ == nullptr) return;
  char* p = nullptr;
  long n = BIO_get_mem_data(wbio_, &p);
  if (n <= 0) return;
  out->append(p, static_cast<size_t>(n));
  (void)BIO_reset(wbio_);
}

bool Session::peer_names_node(uint64_t id) const {
  if (!done_ || ssl_ == nullptr || SSL_get_verify_result(ssl_) != X509_V_OK) return false;
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr) return false;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return false;
  std::string want = node_uri(id);
  bool found = false;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && !found; ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type != GEN_URI) continue;
    const ASN1_STRING* s = g->d.uniformResourceIdentifier;
    found = static_cast<size_t>(ASN1_STRING_length(s)) == want.size() &&
            std::memcmp(ASN1_STRING_get0_data(s), want.data(), want.size()) == 0;
  }
  GENERAL_NAMES_free(names);
  return found;
}

std::string Session::peer_subject() const {
  if (ssl_ == nullptr) return "";
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr) return "";
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof(buf));
  return buf;
}

const char* Session::version() const { return done_ ? SSL_get_version(ssl_) : ""; }

}  // namespace ticketd::tls
