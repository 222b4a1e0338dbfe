#include "server_context.h"

#include <sys/random.h>

#include <charconv>
#include <cstring>

#include "../server/node.h"
#include "ticketd/io/loop.h"
#include "ticketd/raft/types.h"

namespace ticketd::cluster {

std::string hex(uint64_t v) {
  char buf[17];
  auto [p, ec] = std::to_chars(buf, buf + 16, v, 16);
  (void)ec;
  return std::string(buf, p);
}

uint64_t parse_hex(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v, 16);
  return v;
}

bool parse_u64(std::string_view s, uint64_t* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string encode_context(const ServerContext& c) {
  return "r=" + c.raft_addr + " s=" + c.service_addr + " i=" + hex(c.incarnation);
}

ServerContext decode_context(std::string_view s) {
  ServerContext c;
  while (!s.empty()) {
    size_t sp = s.find(' ');
    std::string_view kv = s.substr(0, sp);
    s = sp == std::string_view::npos ? std::string_view{} : s.substr(sp + 1);
    if (kv.size() < 2 || kv[1] != '=') continue;
    std::string_view v = kv.substr(2);
    if (kv[0] == 'r') c.raft_addr = v;
    if (kv[0] == 's') c.service_addr = v;
    if (kv[0] == 'i') c.incarnation = parse_hex(v);
  }
  return c;
}

std::string advertised(const std::string& addr) {
  std::string host;
  uint16_t port = 0;
  if (!io::parse_host_port(addr, &host, &port)) return addr;
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  return host + ":" + std::to_string(port);
}

std::string check_server_addr(std::string_view a, const char* what) {
  std::string host;
  uint16_t port = 0;
  if (a.empty()) return std::string("ERR empty ") + what;
  if (a.size() > kMaxServerAddrBytes) {
    return std::string("ERR ") + what + " longer than " + std::to_string(kMaxServerAddrBytes) +
           " bytes";
  }
  for (char ch : a) {
    if (ch <= ' ' || ch > '~') return std::string("ERR ") + what + " has a space or control character";
  }
  if (!io::parse_host_port(std::string(a), &host, &port) || host.empty()) {
    return std::string("ERR bad ") + what + " '" + std::string(a) + "' (want host:port, port 1-65535)";
  }
  return "";
}

uint64_t random_u64() {
  uint64_t v = 0;
  while (v == 0) {
    if (::getrandom(&v, sizeof(v), 0) != sizeof(v)) v = static_cast<uint64_t>(server::now_us()) * 2654435761u;
  }
  return v;
}

}  // namespace ticketd::cluster
