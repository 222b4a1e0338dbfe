// ReplyReader: the client side of RESP2. It parses one server reply at a time from bytes
// the caller owns, reports how many bytes it used, and points into those bytes (zero copy).
// It never reads past the view it is given, never allocates without bound (depth, bulk size
// and element count are capped) and never crashes on malformed input: it answers kError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ticketd::resp {

enum class ReplyType : uint8_t {
  kSimpleString,  // +OK\r\n             -> text
  kError,         // -ERR x\r\n          -> text (without the '-')
  kInteger,       // :42\r\n             -> integer
  kBulkString,    // $3\r\nabc\r\n       -> text
  kNullBulk,      // $-1\r\n
  kArray,         // *2\r\n...           -> elements (integer holds the count)
  kNullArray,     // *-1\r\n
};

// One parsed reply. `text` points into the caller's input; `elements` points into the
// reader's node storage. Both stay valid until the next Parse()/Next() call on the same
// reader (and, for `text`, while the input bytes are alive and unmoved).
struct Reply {
  ReplyType type = ReplyType::kNullBulk;
  std::string_view text;
  int64_t integer = 0;
  std::span<const Reply> elements;

  bool IsError() const { return type == ReplyType::kError; }
};

enum class ReplyStatus : uint8_t {
  kOk,        // a whole reply was parsed; `consumed` bytes belong to it
  kNeedMore,  // the input is a valid prefix; call again with more bytes
  kError,     // the input can never become a valid reply; `error` says why
};

struct ReplyResult {
  ReplyStatus status = ReplyStatus::kNeedMore;
  size_t consumed = 0;        // kOk only
  Reply reply;                // kOk only
  size_t needed = 0;          // kNeedMore: the input must be at least this long before
                              // the answer can change (lets callers skip re-parsing)
  std::string_view error;     // kError only: a static description
};

struct ReplyLimits {
  size_t max_depth = 16;                  // nesting of arrays
  int64_t max_bulk = 512 * 1024 * 1024;   // bytes in one bulk string
  size_t max_elements = 1 << 20;          // nodes in one reply, all levels together
  size_t max_line = 64 * 1024;            // bytes of a simple string/error/integer line
};

class ReplyReader {
 public:
  explicit ReplyReader(ReplyLimits limits = {}) : limits_(limits) {}

  // Parses one reply from the start of `input`. Stateless across calls except for the
  // reused node storage: a kNeedMore caller simply calls again with a longer input
  // (the `needed` hint says when that is worth doing). Allocates only when a reply has
  // more array elements than any reply before it.
  ReplyResult Parse(std::string_view input);

  // Streaming convenience on top of Parse (copies bytes into an internal buffer).
  // Feed() appends bytes; Next() returns the next whole reply, kNeedMore, or kError.
  // Views in a Next() result stay valid until the next Feed()/Next() call. After kError
  // the stream is poisoned: every later Next() returns the same error. A kNeedMore from
  // Next() counts `needed` against Buffered(), the bytes not yet consumed.
  void Feed(std::string_view bytes);
  ReplyResult Next();
  size_t Buffered() const { return buffer_.size() - start_; }

 private:
  // Parses one reply at input[pos..]; on success writes it into nodes_[slot].
  ReplyStatus ParseAt(std::string_view input, size_t& pos, size_t slot, size_t depth,
                      ReplyResult& out);
  // Finds the "\r\n" that ends a line starting at `pos`; kNeedMore/kError as above.
  ReplyStatus FindLineEnd(std::string_view input, size_t pos, size_t& end,
                          ReplyResult& out) const;

  ReplyLimits limits_;
  std::vector<Reply> nodes_;          // nodes_[0] is the root during a parse
  std::vector<uint32_t> first_child_; // per array node: index of its first element
  std::string buffer_;                // Feed/Next only
  size_t start_ = 0;                  // first unconsumed byte of buffer_
  size_t pending_consumed_ = 0;       // bytes of the reply last returned by Next()
  std::string_view poison_;           // set once Next() has seen kError
};

// Parses a decimal int64 ("-12", "0"); false on empty input, stray bytes or overflow.
bool ParseReplyInteger(std::string_view digits, int64_t& value);

}  // namespace ticketd::resp
