// RESP2 request parser. See include/ticketd/resp/parser.h for the contract.
//
// Every decision depends only on the bytes seen so far, scanning left to right, so a prefix
// of an input never gives an answer its whole contradicts: a prefix either yields kNeedMore
// or exactly what the whole yields. The tests check this at every byte boundary.
#include "ticketd/resp/parser.h"

#include <algorithm>
#include <cstring>

#include "ticketd/base/check.h"

namespace ticketd::resp {
namespace {

constexpr std::string_view kInvalidMultibulk = "ERR Protocol error: invalid multibulk length";
constexpr std::string_view kInvalidBulk = "ERR Protocol error: invalid bulk length";
constexpr std::string_view kTooBigInline = "ERR Protocol error: too big inline request";
constexpr std::string_view kUnbalancedQuotes = "ERR Protocol error: unbalanced quotes in request";
constexpr std::string_view kTooBigMbulk = "ERR Protocol error: too big mbulk count string";
constexpr std::string_view kTooBigBulk = "ERR Protocol error: too big bulk count string";

// The smallest bulk on the wire: "$0\r\n\r\n". Used only for pending_hint() lower bounds.
constexpr size_t kMinBulkBytes = 6;

// Strict decimal int64, as Redis's string2ll: optional '-', no leading zeros, no '+',
// no spaces, no overflow, "-0" rejected.
bool parse_int64(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  size_t i = 0;
  bool negative = false;
  if (s[0] == '-') {
    negative = true;
    i = 1;
    if (s.size() == 1) return false;
  }
  if (s[i] == '0') {
    if (s.size() == 1) {
      *out = 0;
      return true;
    }
    return false;  // leading zero, or "-0"
  }
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (negative) {
    if (v > static_cast<uint64_t>(INT64_MAX) + 1) return false;
    *out = static_cast<int64_t>(0 - v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}

// C-locale isspace: what Redis's sdssplitargs skips between arguments.
inline bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

inline bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

Parser::Parser(Limits limits) : limits_(limits) {
  // Reserved up front so ordinary commands never allocate; a command with more arguments
  // grows the vector once (never beyond max_args, checked before reserving).
  args_.reserve(std::min<size_t>(limits_.max_args, 16));
}

ParseStatus Parser::fail(std::string_view text) {
  TICKETD_CHECK(text.size() <= sizeof(error_buf_));
  std::memcpy(error_buf_, text.data(), text.size());
  error_len_ = text.size();
  args_.clear();
  return ParseStatus::kError;
}

ParseStatus Parser::fail_expected_dollar(char got) {
  constexpr std::string_view kHead = "ERR Protocol error: expected '$', got '";
  static_assert(kHead.size() + 2 <= sizeof(error_buf_));
  std::memcpy(error_buf_, kHead.data(), kHead.size());
  error_buf_[kHead.size()] = got;
  error_buf_[kHead.size() + 1] = '\'';
  error_len_ = kHead.size() + 2;
  args_.clear();
  return ParseStatus::kError;
}

ParseStatus Parser::parse(std::string_view in, size_t* consumed) {
  args_.clear();
  pending_hint_ = 0;
  error_len_ = 0;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t end = pos;
    const ParseStatus s =
        in[pos] == '*' ? parse_multibulk(in, pos, &end) : parse_inline(in, pos, &end);
    if (s != ParseStatus::kOk) {
      *consumed = pos;
      return s;
    }
    TICKETD_CHECK(end > pos && end <= in.size());  // progress, and never past the input
    pos = end;
    if (!args_.empty()) {
      *consumed = pos;
      return ParseStatus::kOk;
    }
    // An empty command: skipped, go on with the next one.
  }
  *consumed = pos;
  return ParseStatus::kNeedMore;
}

// Reads "<type byte><integer>\r\n" starting at `pos` (in[pos] is the type byte, already
// checked by the caller). Non-digit bytes fail at once, so garbage is rejected without
// waiting for a CR; a header with more than kMaxHeaderDigits bytes before its CR is
// `too_big`, so a header line can never make us buffer without bound.
ParseStatus Parser::read_header(std::string_view in, size_t pos, std::string_view too_big,
                                std::string_view invalid, int64_t* value, size_t* next) {
  const size_t digits = pos + 1;
  const size_t limit = std::min(in.size(), digits + kMaxHeaderDigits + 1);
  size_t cr = digits;
  while (cr < limit && in[cr] != '\r') {
    const char c = in[cr];
    if ((c < '0' || c > '9') && c != '-') return fail(invalid);
    ++cr;
  }
  if (cr == limit) {
    if (cr - digits > kMaxHeaderDigits) return fail(too_big);
    return ParseStatus::kNeedMore;
  }
  if (cr + 1 >= in.size()) return ParseStatus::kNeedMore;
  if (in[cr + 1] != '\n') return fail(invalid);
  if (!parse_int64(in.substr(digits, cr - digits), value)) return fail(invalid);
  *next = cr + 2;
  return ParseStatus::kOk;
}

ParseStatus Parser::parse_multibulk(std::string_view in, size_t start, size_t* end) {
  int64_t count = 0;
  size_t pos = start;
  ParseStatus s = read_header(in, start, kTooBigMbulk, kInvalidMultibulk, &count, &pos);
  if (s == ParseStatus::kNeedMore) pending_hint_ = in.size() - start + 1;
  if (s != ParseStatus::kOk) return s;
  if (count <= 0) {  // "*0" and "*-1": an empty command, skipped (Redis does the same)
    *end = pos;
    return ParseStatus::kOk;
  }
  const auto n = static_cast<uint64_t>(count);
  if (n > limits_.max_args) return fail(kInvalidMultibulk);
  if (args_.capacity() < n) args_.reserve(n);  // bounded by max_args, checked just above

  for (uint64_t i = 0; i < n; ++i) {
    const size_t after_this = static_cast<size_t>(n - i - 1) * kMinBulkBytes;
    if (pos >= in.size()) {
      pending_hint_ = pos - start + kMinBulkBytes + after_this;
      args_.clear();
      return ParseStatus::kNeedMore;
    }
    if (in[pos] != '$') return fail_expected_dollar(in[pos]);
    int64_t len = 0;
    size_t payload = pos;
    s = read_header(in, pos, kTooBigBulk, kInvalidBulk, &len, &payload);
    if (s == ParseStatus::kNeedMore) {
      pending_hint_ = std::max(in.size() - start + 1, pos - start + kMinBulkBytes + after_this);
      args_.clear();
      return s;
    }
    if (s != ParseStatus::kOk) return s;
    if (len < 0 || static_cast<uint64_t>(len) > limits_.max_bulk) return fail(kInvalidBulk);
    const auto bytes = static_cast<size_t>(len);
    // The payload is skipped by its declared length, never scanned: this is what keeps
    // re-parsing a large incomplete bulk O(1) per call.
    if (in.size() - payload < bytes + 2) {
      // Reject a wrong terminator as soon as its first byte is here (prefix-consistent).
      if (in.size() - payload > bytes && in[payload + bytes] != '\r') return fail(kInvalidBulk);
      pending_hint_ = payload + bytes + 2 - start + after_this;
      args_.clear();
      return ParseStatus::kNeedMore;
    }
    // Redis skips these two bytes unchecked; we insist on CRLF, since a wrong terminator
    // means the declared length does not match the data, and report it as such.
    if (in[payload + bytes] != '\r' || in[payload + bytes + 1] != '\n') return fail(kInvalidBulk);
    args_.emplace_back(in.data() + payload, bytes);
    pos = payload + bytes + 2;
  }
  *end = pos;
  return ParseStatus::kOk;
}

ParseStatus Parser::parse_inline(std::string_view in, size_t start, size_t* end) {
  const size_t avail = in.size() - start;
  // A line may hold max_inline bytes before its '\n'; search no further than that, so an
  // over-long line is rejected whether or not its '\n' has arrived.
  const size_t window = std::min(avail, limits_.max_inline + 1);
  const void* nl = std::memchr(in.data() + start, '\n', window);
  if (nl == nullptr) {
    if (avail > limits_.max_inline) return fail(kTooBigInline);
    pending_hint_ = avail + 1;
    return ParseStatus::kNeedMore;
  }
  const auto nl_pos = static_cast<size_t>(static_cast<const char*>(nl) - in.data());
  size_t line_end = nl_pos;
  if (line_end > start && in[line_end - 1] == '\r') --line_end;
  const ParseStatus s = split_inline_line(in, start, line_end);
  if (s != ParseStatus::kOk) return s;
  *end = nl_pos + 1;
  return ParseStatus::kOk;
}

// Splits one inline line [begin, end) into arguments with Redis's sdssplitargs rules:
// blanks separate arguments; "..." understands \n \r \t \b \a \xHH and \<any> (that char);
// '...' understands only \'; a closing quote must be followed by a blank or the line end;
// a quote opening mid-argument (foo"bar") continues the same argument.
//
// Zero copy where possible: an argument whose bytes are one contiguous run of the input
// ("abc", or "abc" in quotes) is a view into `in`. The first time an argument is not
// (an escape, or a quote after a prefix), it moves to scratch_. Every output byte consumes
// at least one input byte of this line, so the scratch for one line never needs more than
// the line's length: it is resized (if ever) once, before the first scratch view of this
// line exists, so no view into scratch_ is invalidated by a later growth.
ParseStatus Parser::split_inline_line(std::string_view in, size_t begin, size_t end) {
  const char* p = in.data();
  const size_t line_len = end - begin;
  size_t scratch_used = 0;
  bool scratch_ready = false;
  size_t i = begin;
  while (true) {
    while (i < end && is_blank(p[i])) ++i;
    if (i >= end) return ParseStatus::kOk;

    // The argument being built: a view [run_begin, run_begin + run_len) of `in` until it
    // needs scratch; then scratch_[scratch_begin, scratch_used).
    size_t run_begin = i;
    size_t run_len = 0;
    bool in_scratch = false;
    size_t scratch_begin = 0;
    auto to_scratch = [&] {
      if (in_scratch) return;
      if (!scratch_ready) {
        if (scratch_.size() < line_len) scratch_.resize(line_len);
        scratch_ready = true;
      }
      scratch_begin = scratch_used;
      TICKETD_CHECK(scratch_used + run_len <= scratch_.size());
      std::memcpy(scratch_.data() + scratch_used, p + run_begin, run_len);
      scratch_used += run_len;
      in_scratch = true;
    };
    auto put = [&](char c) {  // a byte that is not a contiguous input byte (an escape)
      to_scratch();
      TICKETD_CHECK(scratch_used < scratch_.size());
      scratch_[scratch_used++] = c;
    };
    auto take = [&](size_t at) {  // the input byte at `at`, verbatim
      if (!in_scratch) {
        if (run_len == 0) {
          run_begin = at;
          run_len = 1;
          return;
        }
        if (run_begin + run_len == at) {
          ++run_len;
          return;
        }
      }
      put(p[at]);
    };

    bool in_double = false;
    bool in_single = false;
    bool done = false;
    while (!done) {
      if (in_double) {
        if (i >= end) return fail(kUnbalancedQuotes);
        const char c = p[i];
        if (c == '\\' && i + 3 < end && p[i + 1] == 'x' && is_hex(p[i + 2]) && is_hex(p[i + 3])) {
          put(static_cast<char>(hex_value(p[i + 2]) * 16 + hex_value(p[i + 3])));
          i += 4;
        } else if (c == '\\' && i + 1 < end) {
          char e = p[i + 1];
          switch (e) {
            case 'n': e = '\n'; break;
            case 'r': e = '\r'; break;
            case 't': e = '\t'; break;
            case 'b': e = '\b'; break;
            case 'a': e = '\a'; break;
            default: break;  // \\ \" and any other: the char itself
          }
          put(e);
          i += 2;
        } else if (c == '"') {
          if (i + 1 < end && !is_blank(p[i + 1])) return fail(kUnbalancedQuotes);
          done = true;
          ++i;
        } else {
          take(i);
          ++i;
        }
      } else if (in_single) {
        if (i >= end) return fail(kUnbalancedQuotes);
        const char c = p[i];
        if (c == '\\' && i + 1 < end && p[i + 1] == '\'') {
          put('\'');
          i += 2;
        } else if (c == '\'') {
          if (i + 1 < end && !is_blank(p[i + 1])) return fail(kUnbalancedQuotes);
          done = true;
          ++i;
        } else {
          take(i);
          ++i;
        }
      } else {
        if (i >= end) break;
        const char c = p[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
          done = true;
        } else if (c == '"') {
          in_double = true;
          if (run_len == 0 && !in_scratch) run_begin = i + 1;  // `""` is an empty view here
          ++i;
        } else if (c == '\'') {
          in_single = true;
          if (run_len == 0 && !in_scratch) run_begin = i + 1;
          ++i;
        } else {
          take(i);
          ++i;
        }
      }
    }
    if (args_.size() >= limits_.max_args) return fail(kTooBigInline);
    if (in_scratch) {
      args_.emplace_back(scratch_.data() + scratch_begin, scratch_used - scratch_begin);
    } else {
      args_.emplace_back(p + run_begin, run_len);
    }
  }
}

}  // namespace ticketd::resp
