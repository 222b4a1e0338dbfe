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

}  // namespace ticketd::server
