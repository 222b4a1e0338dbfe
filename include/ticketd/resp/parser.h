// RESP2 request parser: splits client bytes into commands (multibulk arrays and inline lines)
// whose arguments are views into the caller's buffer, within hard limits on every size.
// It never does I/O, never reads past the bytes it is given, and allocates nothing per command
// once warmed up (inline args with escapes are unescaped into a per-parser arena).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ticketd::resp {

struct Limits {
  size_t max_args = 1024;         // elements in one multibulk array (and args of one inline line)
  size_t max_bulk = 1 << 20;      // bytes in one bulk string (1 MiB)
  size_t max_inline = 64 * 1024;  // bytes in one inline command line (without its '\n')
};

enum class ParseStatus { kOk, kNeedMore, kError };

// The longest `*<count>` / `$<len>` header we accept: the bytes between the type byte and
// the CR. A valid count or length needs at most 20 (an int64 with its sign).
inline constexpr size_t kMaxHeaderDigits = 32;

// ASCII case-insensitive equality, for command-name matching ("ticket" == "TICKET").
bool iequals(std::string_view a, std::string_view b);

class Parser {
 public:
  explicit Parser(Limits limits = {});

  // Parses ONE command from the front of `in`.
  //
  // kOk: args() holds the command (never empty) and *consumed is the number of bytes it took,
  //   including any empty commands skipped in front of it. Empty commands are skipped, never
  //   returned: blank inline lines, lines of only spaces, and multibulk arrays with a count
  //   <= 0 (`*0\r\n`, `*-1\r\n`, as Redis does).
  // kNeedMore: the command is incomplete; *consumed counts only the empty commands skipped in
  //   front of it (may be > 0). Call again with the unconsumed bytes plus more. The parser
  //   keeps no state about the partial command, so the bytes may move in memory between
  //   calls; re-parsing is cheap because bulk payloads are skipped by their declared length
  //   (never scanned), so a large bulk arriving in pieces costs O(pieces), not O(bytes^2).
  // kError: a protocol error; error() holds the Redis text. The caller replies and closes.
  //   *consumed counts the bytes before the offending command.
  ParseStatus parse(std::string_view in, size_t* consumed);

  // The arguments of the last kOk. Each view points into the `in` of that parse() call, or
  // into this parser's scratch arena (an inline argument that had quotes around a prefix,
  // or escapes). Valid until the next parse(), until `in` changes, or until this parser is
  // moved or destroyed.
  std::span<const std::string_view> args() const { return args_; }

  // After kError: e.g. "ERR Protocol error: invalid bulk length" (no leading '-', no CRLF).
  // The text may contain any byte (the "got 'X'" one echoes the offending byte); the writer's
  // append_error() turns CR/LF into spaces.
  std::string_view error() const { return {error_buf_, error_len_}; }

  // After kNeedMore: a lower bound on the whole command's size in bytes, counted from
  // in.data() + *consumed; when nonzero it is larger than the bytes given, so a caller may
  // wait for that many before calling again. 0 when nothing of the command has arrived.
  size_t pending_hint() const { return pending_hint_; }

  const Limits& limits() const { return limits_; }

  // The arena unescaped inline arguments are written to (for tests and diagnostics).
  std::string_view scratch() const { return scratch_; }

 private:
  ParseStatus parse_multibulk(std::string_view in, size_t start, size_t* end);
  ParseStatus parse_inline(std::string_view in, size_t start, size_t* end);
  ParseStatus split_inline_line(std::string_view in, size_t begin, size_t end);
  ParseStatus read_header(std::string_view in, size_t pos, std::string_view too_big,
                          std::string_view invalid, int64_t* value, size_t* next);
  ParseStatus fail(std::string_view text);
  ParseStatus fail_expected_dollar(char got);

  Limits limits_;
  std::vector<std::string_view> args_;  // reused: reserved up front, grows to the largest command
  std::string scratch_;                 // unescaped inline args; sized once per line, see .cpp
  size_t pending_hint_ = 0;
  size_t error_len_ = 0;
  char error_buf_[64] = {};
};

}  // namespace ticketd::resp
