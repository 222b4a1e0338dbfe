// libFuzzer target for ticketd::resp::ReplyReader (the client side of RESP2).
// Input: [control byte][server bytes]. The control byte picks the limits and the chunking.
// The bytes are parsed reply by reply with Parse(), then streamed through Feed()/Next() in
// chunks; both must yield the same replies. Traps on: consumed > size or 0 on kOk, a text view
// outside the input, an array whose element count differs from its integer, nesting deeper
// than max_depth, a kNeedMore `needed` hint not larger than the input, a hint that lies (the
// answer changes before that many bytes), or any difference between the two ways of reading.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ticketd/resp/reply_reader.h"

namespace {

using ticketd::resp::Reply;
using ticketd::resp::ReplyLimits;
using ticketd::resp::ReplyReader;
using ticketd::resp::ReplyResult;
using ticketd::resp::ReplyStatus;
using ticketd::resp::ReplyType;

void require(bool cond) {
  if (!cond) __builtin_trap();
}

bool inside(std::string_view outer, std::string_view inner) {
  if (inner.empty()) return true;
  return inner.data() >= outer.data() &&
         inner.data() + inner.size() <= outer.data() + outer.size();
}

// Checks one reply tree and flattens it into a canonical text for comparison. `in` null skips
// the bounds check (a streamed reply points into the reader's own buffer).
void flatten(const Reply& r, const std::string_view* in, size_t depth, const ReplyLimits& limits,
             size_t* nodes, std::string* out) {
  require(depth <= limits.max_depth + 1);
  ++*nodes;
  out->push_back(static_cast<char>('0' + static_cast<int>(r.type)));
  switch (r.type) {
    case ReplyType::kSimpleString:
    case ReplyType::kError:
    case ReplyType::kBulkString:
      require(in == nullptr || inside(*in, r.text));
      require(r.elements.empty());
      out->append(std::to_string(r.text.size()));
      out->push_back(':');
      out->append(r.text);
      break;
    case ReplyType::kInteger:
      require(r.elements.empty());
      out->append(std::to_string(r.integer));
      break;
    case ReplyType::kNullBulk:
    case ReplyType::kNullArray:
      require(r.elements.empty());
      break;
    case ReplyType::kArray:
      require(r.integer >= 0);
      require(static_cast<uint64_t>(r.integer) == r.elements.size());
      out->append(std::to_string(r.integer));
      out->push_back('[');
      for (const Reply& e : r.elements) flatten(e, in, depth + 1, limits, nodes, out);
      out->push_back(']');
      break;
  }
}

struct Outcome {
  std::vector<std::string> replies;
  bool error = false;
};

void check_result(const ReplyResult& r, std::string_view in, const ReplyLimits& limits,
                  Outcome* out) {
  switch (r.status) {
    case ReplyStatus::kOk: {
      require(r.consumed > 0 && r.consumed <= in.size());
      std::string flat;
      size_t nodes = 0;
      std::string_view used = in.substr(0, r.consumed);
      flatten(r.reply, &used, 0, limits, &nodes, &flat);
      require(nodes <= limits.max_elements + 1);
      out->replies.push_back(std::move(flat));
      break;
    }
    case ReplyStatus::kNeedMore:
      require(r.needed > in.size());
      break;
    case ReplyStatus::kError:
      require(!r.error.empty());
      out->error = true;
      break;
  }
}

Outcome read_whole(const ReplyLimits& limits, std::string_view data) {
  ReplyReader reader(limits);
  Outcome out;
  size_t pos = 0;
  for (;;) {
    std::string_view in = data.substr(pos);
    ReplyResult r = reader.Parse(in);
    check_result(r, in, limits, &out);
    if (r.status == ReplyStatus::kNeedMore) {
      // The hint's promise: every shorter input gives kNeedMore too. Check a prefix just
      // below it (and below the input size) on a fresh reader.
      ReplyReader again(limits);
      if (r.needed > 1) {
        size_t cut = std::min(in.size(), r.needed - 1);
        require(again.Parse(in.substr(0, cut)).status == ReplyStatus::kNeedMore);
      }
      break;
    }
    if (r.status != ReplyStatus::kOk) break;
    pos += r.consumed;
  }
  return out;
}

Outcome read_stream(const ReplyLimits& limits, std::string_view data, uint8_t ctl) {
  ReplyReader reader(limits);
  Outcome out;
  uint32_t rng = (static_cast<uint32_t>(ctl) * 2654435761u) ^ static_cast<uint32_t>(data.size());
  rng |= 1;
  size_t given = 0;
  size_t step = 0;
  while (given < data.size()) {
    ++step;
    size_t n;
    if ((ctl & 3) == 1) {
      n = 1;
    } else if ((ctl & 3) == 0) {
      n = step == 1 ? rng % (data.size() + 1) : data.size() - given;  // one split
    } else {
      rng ^= rng << 13;
      rng ^= rng >> 17;
      rng ^= rng << 5;
      n = 1 + rng % 64;
    }
    n = std::min(n, data.size() - given);
    reader.Feed(data.substr(given, n));
    given += n;
    for (;;) {
      ReplyResult r = reader.Next();
      // Counted after Next(): it first drops the reply it returned last time.
      size_t buffered = reader.Buffered();
      if (r.status == ReplyStatus::kError) {
        require(!r.error.empty());
        out.error = true;
        // Poisoned: the same error again.
        require(reader.Next().status == ReplyStatus::kError);
        return out;
      }
      if (r.status == ReplyStatus::kNeedMore) {
        require(r.needed > buffered);
        break;
      }
      require(r.consumed > 0 && r.consumed <= buffered);
      std::string flat;
      size_t nodes = 0;
      flatten(r.reply, nullptr, 0, limits, &nodes, &flat);
      out.replies.push_back(std::move(flat));
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  if (size < 1) return 0;
  uint8_t ctl = raw[0];
  std::string_view data(reinterpret_cast<const char*>(raw + 1), size - 1);
  ReplyLimits limits;
  if (ctl & 0x80) {
    limits.max_depth = 3;
    limits.max_bulk = 16;
    limits.max_elements = 8;
    limits.max_line = 24;
  }
  Outcome whole = read_whole(limits, data);
  if ((ctl & 3) == 1 && data.size() > 2048) ctl = static_cast<uint8_t>(ctl | 3);
  Outcome streamed = read_stream(limits, data, ctl);
  require(whole.replies == streamed.replies);
  require(whole.error == streamed.error);
  return 0;
}
