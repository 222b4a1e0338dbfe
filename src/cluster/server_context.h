// What the cluster room says about a server: the opaque context raft keeps per member (its
// addresses and the incarnation of its data directory), address checks, and small number
// helpers. Promises: decode never fails (unknown keys are skipped); check_server_addr says
// why an address a client or peer gave us is unusable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ticketd::cluster {

std::string hex(uint64_t v);
uint64_t parse_hex(std::string_view s);
bool parse_u64(std::string_view s, uint64_t* v);
uint64_t random_u64();

// A server address in a configuration: far below raft's per-server context limit.
inline constexpr size_t kMaxServerAddrBytes = 255;

// The opaque per-server context raft keeps in the configuration: our addresses and the
// incarnation id of the node's data directory.
struct ServerContext {
  std::string raft_addr;
  std::string service_addr;
  uint64_t incarnation = 0;
};

std::string encode_context(const ServerContext& c);
ServerContext decode_context(std::string_view s);

// ":port" binds every interface, but peers and clients need an address to reach us.
std::string advertised(const std::string& addr);

// An address a client or a peer gives us for a server: "host:port" with a real port and a
// host of printable characters without spaces (the context is space-separated), short
// enough that a configuration of kMaxServers always encodes. "" if fine, else why not.
std::string check_server_addr(std::string_view a, const char* what);

}  // namespace ticketd::cluster
