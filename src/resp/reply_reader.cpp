#include "ticketd/resp/reply_reader.h"

#include <cstring>
#include <limits>

namespace ticketd::resp {
namespace {

// True when `s` could still become a valid decimal integer once more digits arrive.
bool IsIntegerPrefix(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return s.size() <= 20;  // "-9223372036854775808" is 20 bytes
}

}  // namespace

bool ParseReplyInteger(std::string_view digits, int64_t& value) {
  size_t i = 0;
  bool negative = false;
  if (!digits.empty() && digits[0] == '-') {
    negative = true;
    i = 1;
  }
  if (i == digits.size()) return false;
  // The same bound the streaming prefix check applies, so a reply parses the same whether
  // it arrives whole or in pieces ("-9223372036854775808" is 20 bytes).
  if (digits.size() > 20) return false;
  // Accumulate as a negative number so INT64_MIN fits.
  int64_t acc = 0;
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  for (; i < digits.size(); ++i) {
    char c = digits[i];
    if (c < '0' || c > '9') return false;
    int d = c - '0';
    if (acc < kMin / 10 || acc * 10 < kMin + d) return false;
    acc = acc * 10 - d;
  }
  if (!negative) {
    if (acc == kMin) return false;
    acc = -acc;
  }
  value = acc;
  return true;
}

ReplyStatus ReplyReader::FindLineEnd(std::string_view input, size_t pos, size_t& end,
                                     ReplyResult& out) const {
  size_t avail = input.size() - pos;
  size_t scan = avail < limits_.max_line + 1 ? avail : limits_.max_line + 1;
  const char* base = input.data() + pos;
  const void* cr = scan ? std::memchr(base, '\r', scan) : nullptr;
  size_t until = cr ? static_cast<size_t>(static_cast<const char*>(cr) - base) : scan;
  if (until && std::memchr(base, '\n', until) != nullptr) {
    out.error = "bare LF inside a reply line";
    return ReplyStatus::kError;
  }
  if (cr == nullptr) {
    if (avail > limits_.max_line) {
      out.error = "reply line too long";
      return ReplyStatus::kError;
    }
    out.needed = input.size() + 1;
    return ReplyStatus::kNeedMore;
  }
  size_t idx = pos + until;
  if (idx + 1 == input.size()) {
    out.needed = input.size() + 1;
    return ReplyStatus::kNeedMore;
  }
  if (input[idx + 1] != '\n') {
    out.error = "CR not followed by LF";
    return ReplyStatus::kError;
  }
  end = idx;
  return ReplyStatus::kOk;
}

ReplyStatus ReplyReader::ParseAt(std::string_view input, size_t& pos, size_t slot,
                                 size_t depth, ReplyResult& out) {
  if (pos >= input.size()) {
    out.needed = pos + 1;
    return ReplyStatus::kNeedMore;
  }
  const char kind = input[pos];
  const size_t line = pos + 1;
  switch (kind) {
    case '+':
    case '-': {
      size_t end = 0;
      ReplyStatus st = FindLineEnd(input, line, end, out);
      if (st != ReplyStatus::kOk) return st;
      Reply& r = nodes_[slot];
      r.type = kind == '+' ? ReplyType::kSimpleString : ReplyType::kError;
      r.text = input.substr(line, end - line);
      pos = end + 2;
      return ReplyStatus::kOk;
    }
    case ':':
    case '$':
    case '*': {
      size_t end = 0;
      ReplyStatus st = FindLineEnd(input, line, end, out);
      if (st == ReplyStatus::kNeedMore) {
        // Fail early on garbage instead of waiting for a CRLF that proves nothing.
        std::string_view partial = input.substr(line);
        if (!partial.empty() && partial.back() == '\r') partial.remove_suffix(1);
        if (!IsIntegerPrefix(partial)) {
          out.error = "invalid integer in reply";
          return ReplyStatus::kError;
        }
        return st;
      }
      if (st != ReplyStatus::kOk) return st;
      int64_t value = 0;
      if (!ParseReplyInteger(input.substr(line, end - line), value)) {
        out.error = "invalid integer in reply";
        return ReplyStatus::kError;
      }
      pos = end + 2;
      if (kind == ':') {
        Reply& r = nodes_[slot];
        r.type = ReplyType::kInteger;
        r.integer = value;
        return ReplyStatus::kOk;
      }
      if (kind == '$') {
        if (value == -1) {
          nodes_[slot].type = ReplyType::kNullBulk;
          return ReplyStatus::kOk;
        }
        if (value < 0 || value > limits_.max_bulk) {
          out.error = value < 0 ? "negative bulk length" : "bulk string too long";
          return ReplyStatus::kError;
        }
        size_t len = static_cast<size_t>(value);
        if (input.size() - pos < len + 2) {
          out.needed = pos + len + 2;
          // The terminator may already be visible and wrong.
          if (input.size() > pos + len && input[pos + len] != '\r') {
            out.error = "bulk string not terminated by CRLF";
            return ReplyStatus::kError;
          }
          return ReplyStatus::kNeedMore;
        }
        if (input[pos + len] != '\r' || input[pos + len + 1] != '\n') {
          out.error = "bulk string not terminated by CRLF";
          return ReplyStatus::kError;
        }
        Reply& r = nodes_[slot];
        r.type = ReplyType::kBulkString;
        r.text = input.substr(pos, len);
        pos += len + 2;
        return ReplyStatus::kOk;
      }
      // Array.
      if (value == -1) {
        nodes_[slot].type = ReplyType::kNullArray;
        return ReplyStatus::kOk;
      }
      if (value < 0) {
        out.error = "negative array length";
        return ReplyStatus::kError;
      }
      if (depth >= limits_.max_depth) {
        out.error = "reply nested too deeply";
        return ReplyStatus::kError;
      }
      size_t count = static_cast<size_t>(value);
      if (count > limits_.max_elements || nodes_.size() + count > limits_.max_elements) {
        out.error = "reply has too many elements";
        return ReplyStatus::kError;
      }
      // Reserve the children contiguously before parsing them: nested arrays append
      // their own children after ours, so our block never interleaves with theirs.
      size_t first = nodes_.size();
      nodes_.resize(first + count);
      first_child_.resize(first + count);
      {
        Reply& r = nodes_[slot];  // re-fetched: resize may have moved the storage
        r.type = ReplyType::kArray;
        r.integer = value;
        first_child_[slot] = static_cast<uint32_t>(first);
      }
      for (size_t i = 0; i < count; ++i) {
        st = ParseAt(input, pos, first + i, depth + 1, out);
        if (st != ReplyStatus::kOk) return st;
      }
      return ReplyStatus::kOk;
    }
    default:
      out.error = "unknown reply type byte";
      return ReplyStatus::kError;
  }
}

ReplyResult ReplyReader::Parse(std::string_view input) {
  ReplyResult out;
  nodes_.clear();
  first_child_.clear();
  nodes_.resize(1);
  first_child_.resize(1);
  size_t pos = 0;
  out.status = ParseAt(input, pos, 0, 0, out);
  if (out.status != ReplyStatus::kOk) return out;
  // Node storage is final now: turn child indexes into spans.
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Reply& r = nodes_[i];
    if (r.type == ReplyType::kArray) {
      r.elements = std::span<const Reply>(nodes_.data() + first_child_[i],
                                          static_cast<size_t>(r.integer));
    }
  }
  out.consumed = pos;
  out.reply = nodes_[0];
  return out;
}

void ReplyReader::Feed(std::string_view bytes) {
  start_ += pending_consumed_;
  pending_consumed_ = 0;
  if (start_ == buffer_.size()) {
    buffer_.clear();
    start_ = 0;
  } else if (start_ > 4096 && start_ > buffer_.size() / 2) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  buffer_.append(bytes);
}

ReplyResult ReplyReader::Next() {
  if (!poison_.empty()) {
    ReplyResult r;
    r.status = ReplyStatus::kError;
    r.error = poison_;
    return r;
  }
  start_ += pending_consumed_;
  pending_consumed_ = 0;
  ReplyResult r = Parse(std::string_view(buffer_).substr(start_));
  if (r.status == ReplyStatus::kOk) {
    pending_consumed_ = r.consumed;
  } else if (r.status == ReplyStatus::kError) {
    poison_ = r.error;
  }
  return r;
}

}  // namespace ticketd::resp
