// libFuzzer target for ticketd::resp::Parser (the RESP2 request parser).
// Input: [control byte][client bytes]. The control byte picks the limits and how the bytes are
// chunked. The whole input is parsed as one pipeline, then fed again in chunks the way a
// connection does (unconsumed bytes kept, moved, re-parsed with more); both must agree.
// Traps on: consumed > size, no progress on kOk, an empty command, an argument pointing outside
// the input and the scratch arena, a pending_hint() that is not larger than the bytes given, or
// any difference between the pipeline and the chunked feed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ticketd/resp/parser.h"

namespace {

using ticketd::resp::Limits;
using ticketd::resp::ParseStatus;
using ticketd::resp::Parser;

void require(bool cond) {
  if (!cond) __builtin_trap();
}

bool inside(std::string_view outer, std::string_view inner) {
  if (inner.empty()) return true;  // an empty view's pointer is never dereferenced
  const char* b = outer.data();
  const char* e = b + outer.size();
  return inner.data() >= b && inner.data() + inner.size() <= e;
}

struct Outcome {
  std::vector<std::vector<std::string>> commands;
  bool error = false;
  std::string error_text;
};

// Checks one parse() answer against the contract and records a command.
void check_answer(Parser& p, ParseStatus st, std::string_view in, size_t consumed,
                  Outcome* out) {
  require(consumed <= in.size());
  switch (st) {
    case ParseStatus::kOk: {
      require(consumed > 0);
      auto args = p.args();
      require(!args.empty());
      require(args.size() <= p.limits().max_args);
      std::vector<std::string> cmd;
      for (std::string_view a : args) {
        require(inside(in.substr(0, consumed), a) || inside(p.scratch(), a));
        cmd.emplace_back(a);
      }
      out->commands.push_back(std::move(cmd));
      break;
    }
    case ParseStatus::kNeedMore: {
      size_t rest = in.size() - consumed;
      size_t hint = p.pending_hint();
      require(hint == 0 || hint > rest);
      break;
    }
    case ParseStatus::kError:
      require(!p.error().empty());
      out->error = true;
      out->error_text = std::string(p.error());
      break;
  }
}

Outcome parse_pipeline(const Limits& limits, std::string_view data) {
  Parser p(limits);
  Outcome out;
  size_t pos = 0;
  for (;;) {
    std::string_view in = data.substr(pos);
    size_t consumed = 0;
    ParseStatus st = p.parse(in, &consumed);
    check_answer(p, st, in, consumed, &out);
    pos += consumed;
    if (st != ParseStatus::kOk) break;
  }
  return out;
}

// Feeds `data` in chunks like a connection: bytes not consumed stay in a buffer that is
// compacted (so they move) before the next chunk is appended.
Outcome parse_connection(const Limits& limits, std::string_view data, uint8_t mode,
                         uint32_t seed) {
  Parser p(limits);
  Outcome out;
  std::string buf;
  size_t given = 0;
  // From the last kNeedMore: if the command completes, it is at least this long. (It is no
  // promise about errors: a caller that waits for it only learns of an error later.)
  size_t hint_needed = 0;
  uint32_t rng = seed | 1;
  size_t step = 0;
  while (given < data.size()) {
    ++step;
    size_t n;
    switch (mode) {
      case 0:  // one split at a data-derived point
        n = step == 1 ? seed % (data.size() + 1) : data.size() - given;
        break;
      case 1:  // a byte at a time
        n = 1;
        break;
      default:  // pseudo-random chunks of 1..64 bytes
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        n = 1 + rng % 64;
        break;
    }
    n = std::min(n, data.size() - given);
    // Force a copy into fresh storage now and then, so views from earlier calls would dangle.
    std::string fresh;
    fresh.reserve(buf.size() + n + 1);
    fresh.append(buf);
    fresh.append(data.substr(given, n));
    buf.swap(fresh);
    given += n;
    if (hint_needed > 0 && buf.size() < hint_needed) continue;  // the hint says: nothing changes
    for (;;) {
      size_t consumed = 0;
      ParseStatus st = p.parse(buf, &consumed);
      check_answer(p, st, buf, consumed, &out);
      if (st == ParseStatus::kOk) require(consumed >= hint_needed);
      if (st == ParseStatus::kError) return out;
      // The hint counts from buf.data() + consumed, which is where buf starts after the erase.
      hint_needed = st == ParseStatus::kNeedMore ? p.pending_hint() : 0;
      buf.erase(0, consumed);
      if (st == ParseStatus::kNeedMore) break;
    }
  }
  // Every byte has arrived: the final parse must see what the pipeline saw.
  if (hint_needed > 0) {
    size_t consumed = 0;
    ParseStatus st = p.parse(buf, &consumed);
    check_answer(p, st, buf, consumed, &out);
    // The hint promised the command is longer than what we hold: it cannot complete.
    require(st != ParseStatus::kOk);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  if (size < 1) return 0;
  uint8_t ctl = raw[0];
  std::string_view data(reinterpret_cast<const char*>(raw + 1), size - 1);

  Limits limits;
  if (ctl & 0x80) {
    // Small limits so the fuzzer reaches every limit check with short inputs.
    limits.max_args = 4;
    limits.max_bulk = 16;
    limits.max_inline = 32;
  }
  Outcome whole = parse_pipeline(limits, data);

  uint8_t mode = ctl & 0x3;
  uint32_t seed = static_cast<uint32_t>(ctl) * 2654435761u ^ static_cast<uint32_t>(size);
  if (mode == 1 && data.size() > 2048) mode = 2;  // keep byte-at-a-time runs fast
  Outcome chunked = parse_connection(limits, data, mode, seed);

  require(whole.commands == chunked.commands);
  require(whole.error == chunked.error);
  require(whole.error_text == chunked.error_text);
  return 0;
}
