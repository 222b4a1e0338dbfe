#include "ticketd/server/options.h"

namespace ticketd::server {

const char* durability_name(Durability d) {
  switch (d) {
    case Durability::kHigh: return "high";
    case Durability::kMedium: return "medium";
    case Durability::kLow: return "low";
  }
  return "?";
}

bool parse_durability(const std::string& s, Durability* out) {
  if (s == "high") {
    *out = Durability::kHigh;
  } else if (s == "medium") {
    *out = Durability::kMedium;
  } else if (s == "low") {
    *out = Durability::kLow;
  } else {
    return false;
  }
  return true;
}

bool tls_enabled(const ServerOptions& o) { return o.tls_port != 0 || o.tls_cluster; }

std::string client_address(const ServerOptions& o) {
  if (o.tls_port == 0) return o.saddr;
  size_t colon = o.saddr.rfind(':');
  std::string host = colon == std::string::npos ? std::string() : o.saddr.substr(0, colon);
  return host + ":" + std::to_string(o.tls_port);
}

}  // namespace ticketd::server
