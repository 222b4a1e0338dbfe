// TLS commands and status (issue 13): TLS.RELOAD and the INFO `tls` section.
// Promises: a reload swaps in a complete new certificate/key/CA set or keeps the old one and
// says why; connections already made keep theirs. Never: shows a key or its path's contents.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace ticketd::server {

class Shard;
struct Connection;

namespace tls_commands {

// TLS.RELOAD: reads --tls-cert-file, --tls-key-file and --tls-ca-cert-file again (as SIGHUP
// does): +OK, or -ERR with the reason while the old ones stay in use.
void cmd_reload(Shard& s, Connection* c, std::span<const std::string_view> args, std::string& out);
// INFO's `# TLS` section (appended only when `want` says so; its own function, one call line).
void append_info(Shard& s, std::string& r);

}  // namespace tls_commands
}  // namespace ticketd::server
