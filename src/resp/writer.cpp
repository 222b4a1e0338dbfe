// RESP2 reply encoder. See include/ticketd/resp/writer.h.
//
// Each reply is built in a small stack buffer where it has a bounded size, then appended
// with one call, so `out` grows at most once per reply and nothing else allocates.
#include "ticketd/resp/writer.h"

#include <charconv>

namespace ticketd::resp {
namespace {

// Room for a type byte, a 20-digit number with sign, and CRLF.
constexpr size_t kNumberLine = 1 + 20 + 1 + 2;

template <typename Int>
inline void append_number_line(std::string& out, char type, Int v) {
  char buf[kNumberLine];
  buf[0] = type;
  char* end = std::to_chars(buf + 1, buf + sizeof(buf) - 2, v).ptr;
  end[0] = '\r';
  end[1] = '\n';
  out.append(buf, static_cast<size_t>(end + 2 - buf));
}

// Appends "<type><s>\r\n" with CR/LF in `s` turned into spaces, so a reply line can
// never end early and let the rest of `s` be read as another reply.
inline void append_line(std::string& out, char type, std::string_view s) {
  const size_t at = out.size();
  out.reserve(at + s.size() + 3);
  out.push_back(type);
  out.append(s);
  char* p = out.data() + at + 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (p[i] == '\r' || p[i] == '\n') p[i] = ' ';
  }
  out.append("\r\n", 2);
}

}  // namespace

void append_simple(std::string& out, std::string_view s) { append_line(out, '+', s); }

void append_error(std::string& out, std::string_view s) { append_line(out, '-', s); }

void append_integer(std::string& out, int64_t v) { append_number_line(out, ':', v); }

void append_bulk(std::string& out, std::string_view bytes) {
  out.reserve(out.size() + kNumberLine + bytes.size() + 2);
  append_number_line(out, '$', bytes.size());
  out.append(bytes);
  out.append("\r\n", 2);
}

void append_null(std::string& out) { out.append("$-1\r\n", 5); }

void append_null_array(std::string& out) { out.append("*-1\r\n", 5); }

void append_array_header(std::string& out, size_t n) { append_number_line(out, '*', n); }

void append_simple_u64(std::string& out, uint64_t v) { append_number_line(out, '+', v); }

void append_integer_u64(std::string& out, uint64_t v) { append_number_line(out, ':', v); }

}  // namespace ticketd::resp
