// auth internals: ASCII case folding for command, category and keyword names.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

namespace ticketd::auth {

inline char fold(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

inline bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return fold(x) == fold(y); });
}

}  // namespace ticketd::auth
