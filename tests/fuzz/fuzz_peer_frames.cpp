// libFuzzer target for the peer transport's wire parsing: PeerFrameReader (frame reassembly
// from a TCP byte stream), decode_hello (the first frame of every link; version 3 carries the
// cluster-secret handshake's nonce) and the handshake's decode_challenge and decode_proof.
// Input: [control byte][stream bytes]. The stream is fed whole to one reader and in chunks
// (control-chosen sizes) to another; both must report the same frames and the same failure.
// Each frame's payload also goes to decode_hello; with control bit 7 set, the harness first
// rewrites a hello payload's trailing xxh3 so mutations reach the field decoder.
// Traps on: a frame over the limit, a stash above max_frame + header, a payload outside its
// source, a reader that goes on after failing, or a decoded hello, challenge or proof that does
// not re-encode to the same payload.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "peer_transport.h"

namespace {

using ticketd::cluster::PeerFrameReader;
using ticketd::cluster::PeerHello;

void require(bool cond) {
  if (!cond) __builtin_trap();
}

struct Outcome {
  std::vector<std::string> frames;  // kind byte + payload
  bool failed = false;
};

// Accepts a frame unless its kind is 0xff (exercises the "on_frame refused" path).
bool take_frame(uint32_t max_frame, uint8_t kind, std::string_view payload, Outcome* out) {
  require(payload.size() + 1 <= max_frame);
  std::string f(1, static_cast<char>(kind));
  f.append(payload);
  out->frames.push_back(std::move(f));
  return kind != 0xff;
}

void check_hello(std::string_view payload, bool fix_checksum) {
  std::string p(payload);
  if (fix_checksum && p.size() >= 8) {
    uint64_t sum = XXH3_64bits(p.data(), p.size() - 8);
    std::memcpy(p.data() + p.size() - 8, &sum, 8);
  }
  PeerHello h;
  std::string err = ticketd::cluster::decode_hello(p, &h);
  if (!err.empty()) return;
  require(h.service_addr.size() <= ticketd::cluster::kMaxHelloAddrBytes);
  require(h.raft_addr.size() <= ticketd::cluster::kMaxHelloAddrBytes);
  // Round trip: the frame the encoder makes carries exactly these payload bytes.
  std::string frame;
  ticketd::cluster::append_hello_frame(h, &frame);
  require(frame.size() == ticketd::cluster::kPeerFrameHeader + p.size());
  require(std::string_view(frame).substr(ticketd::cluster::kPeerFrameHeader) == p);
  PeerHello again;
  require(ticketd::cluster::decode_hello(p, &again).empty());
  require(again == h);
}

// Every payload is also tried as a CHALLENGE, a WELCOME and a PROOF: what decodes re-encodes to
// itself.
void check_handshake(std::string_view payload) {
  using namespace ticketd::cluster;
  PeerChallenge c;
  if (decode_challenge(payload, &c).empty()) {
    std::string frame;
    append_challenge_frame(c, &frame);
    require(std::string_view(frame).substr(kPeerFrameHeader) == payload);
  }
  PeerWelcome w;
  if (decode_welcome(payload, &w).empty()) {
    require(w.chosen >= w.wire_min && w.chosen <= w.wire_max);
    std::string frame;
    append_welcome_frame(w, &frame);
    require(std::string_view(frame).substr(kPeerFrameHeader) == payload);
  }
  ticketd::auth::Digest proof{};
  if (decode_proof(payload, &proof).empty()) {
    std::string frame;
    append_proof_frame(proof, &frame);
    require(std::string_view(frame).substr(kPeerFrameHeader) == payload);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  if (size < 1) return 0;
  uint8_t ctl = raw[0];
  std::string_view data(reinterpret_cast<const char*>(raw + 1), size - 1);
  // Small limits reach the length checks; large ones reach multi-chunk reassembly.
  const uint32_t max_frame = (ctl & 0x40) ? 64 : 4096;
  const bool fix = (ctl & 0x80) != 0;

  Outcome whole;
  {
    PeerFrameReader r(max_frame);
    bool ok = r.feed(data.data(), data.size(), [&](uint8_t kind, std::string_view payload) {
      require(payload.data() >= data.data() &&
              payload.data() + payload.size() <= data.data() + data.size());
      check_hello(payload, fix);
      check_handshake(payload);
      return take_frame(max_frame, kind, payload, &whole);
    });
    whole.failed = !ok;
    require(r.failed() == !ok);
    if (!ok) {
      require(!r.error().empty());
      // A failed reader stays failed and calls nothing.
      require(!r.feed(data.data(), data.size(), [](uint8_t, std::string_view) {
        __builtin_trap();
        return true;
      }));
    }
  }

  Outcome chunked;
  {
    PeerFrameReader r(max_frame);
    uint32_t rng = ((static_cast<uint32_t>(ctl) * 2654435761u) ^ static_cast<uint32_t>(size)) | 1;
    size_t given = 0;
    bool ok = true;
    size_t step = 0;
    while (ok && given < data.size()) {
      ++step;
      size_t n;
      switch (ctl & 3) {
        case 0:
          n = step == 1 ? rng % (data.size() + 1) : data.size() - given;  // one split
          break;
        case 1:
          n = 1;
          break;
        default:
          rng ^= rng << 13;
          rng ^= rng >> 17;
          rng ^= rng << 5;
          n = 1 + rng % 300;
          break;
      }
      n = std::min(n, data.size() - given);
      // A fresh copy per chunk, as a receive buffer is recycled after the call.
      std::string chunk(data.substr(given, n));
      given += n;
      ok = r.feed(chunk.data(), chunk.size(), [&](uint8_t kind, std::string_view payload) {
        return take_frame(max_frame, kind, payload, &chunked);
      });
      require(r.buffered() <= max_frame + 4);
    }
    chunked.failed = !ok;
  }
  require(whole.frames == chunked.frames);
  require(whole.failed == chunked.failed);
  return 0;
}
