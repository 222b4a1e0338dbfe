#include "tls_commands.h"

#include <cinttypes>
#include <cstdio>

#include "node.h"
#include "shard.h"
#include "ticketd/resp/writer.h"

namespace ticketd::server::tls_commands {

void cmd_reload(Shard& s, Connection*, std::span<const std::string_view>, std::string& out) {
  // A few KB of PEM from local files, read on this shard's thread: an operator's command at
  // rotation time, never on a client's path.
  std::string err;
  if (s.node().reload_tls(&err)) {
    resp::append_simple(out, "OK");
  } else {
    resp::append_error(out, "ERR TLS reload failed, the old certificate stays in use: " + err);
  }
}

void append_info(Shard& s, std::string& r) {
  Node& node = s.node();
  const ServerOptions& o = node.opts();
  uint64_t conns = 0, ok = 0, failed = 0, timeouts = 0, errors = 0, on_plain = 0;
  for (uint32_t i = 0; i < node.shard_count(); ++i) {
    ShardStats& st = node.shard(i).stats();
    conns += st.tls_connected.load(std::memory_order_relaxed);
    ok += st.tls_handshakes.load(std::memory_order_relaxed);
    failed += st.tls_handshake_failures.load(std::memory_order_relaxed);
    timeouts += st.tls_handshake_timeouts.load(std::memory_order_relaxed);
    errors += st.tls_errors.load(std::memory_order_relaxed);
    on_plain += st.tls_on_plaintext_port.load(std::memory_order_relaxed);
  }
  auto line = [&r](const char* key, uint64_t v) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%s:%" PRIu64 "\r\n", key, v);
    r += buf;
  };
  r += "# TLS\r\n";
  line("tls_port", o.tls_port);
  r += "tls_cluster:";
  r += o.tls_cluster ? "yes\r\n" : "no\r\n";
  r += "tls_auth_clients:";
  r += o.tls_auth_clients == ServerOptions::TlsAuthClients::kYes        ? "yes\r\n"
       : o.tls_auth_clients == ServerOptions::TlsAuthClients::kOptional ? "optional\r\n"
                                                                         : "no\r\n";
  if (tls::Contexts* t = node.tls()) {
    auto set = t->current();
    r += "tls_cert_subject:" + set->subject() + "\r\n";
    r += "tls_cert_not_after:" + set->not_after() + "\r\n";
    line("tls_loads", t->loads());
  }
  line("tls_connections", conns);
  line("tls_handshakes", ok);
  line("tls_handshake_failures", failed);
  line("tls_handshake_timeouts", timeouts);
  line("tls_stream_errors", errors);
  line("tls_hello_on_plaintext_port", on_plain);
  r += "\r\n";
}

}  // namespace ticketd::server::tls_commands
