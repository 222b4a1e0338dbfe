// Writes the seed corpora of the fuzz targets: valid inputs made by the project's own encoders
// (RESP commands and replies by hand, raft::encode, the peer frame encoders, a real Wal, a real
// HardStateFile and SnapshotFile). Usage: fuzz_make_corpus <dir> (creates <dir>/<target>/).
// Each seed starts with the target's control byte (see the targets' header comments).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "peer_transport.h"
#include "ticketd/raft/codec.h"
#include "ticketd/storage/hard_state_file.h"
#include "ticketd/storage/scratch_dir.h"
#include "ticketd/storage/snapshot_file.h"
#include "ticketd/storage/wal.h"
#include "ticketd/tickets/state_machine.h"

namespace {

using namespace ticketd;

std::string g_root;

void put_seed(const std::string& target, const std::string& name, uint8_t ctl,
              const std::string& bytes) {
  std::string dir = g_root + "/" + target;
  ::mkdir(g_root.c_str(), 0755);
  ::mkdir(dir.c_str(), 0755);
  std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    std::exit(1);
  }
  std::fputc(ctl, f);
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

std::string to_string(const std::vector<std::byte>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

void resp_parser_seeds() {
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"ticket", "*1\r\n$6\r\nTICKET\r\n"},
      {"ticket_n", "*2\r\n$6\r\nTICKET\r\n$3\r\n100\r\n"},
      {"inline", "TICKET 5\r\nPING\r\n"},
      {"inline_quotes", "SET \"a\\x41\\n\" 'it''s' \"\\\"q\\\"\"\r\n"},
      {"pipeline", "*1\r\n$4\r\nPING\r\n*0\r\n*-1\r\n\r\n   \r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"},
      {"info", "*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n*1\r\n$4\r\nQUIT\r\n"},
      {"raft_cmd", "*3\r\n$8\r\nRAFT.ADD\r\n$1\r\n4\r\n$14\r\n127.0.0.1:7004\r\n"},
      {"bad_len", "*1\r\n$-5\r\n"},
      {"bad_dollar", "*2\r\n:6\r\n"},
      {"unbalanced", "GET \"abc\r\n"},
  };
  const uint8_t ctls[] = {0x00, 0x01, 0x02, 0x81};
  for (const auto& [name, bytes] : seeds) {
    for (uint8_t c : ctls) {
      char suffix[8];
      std::snprintf(suffix, sizeof suffix, "-%02x", c);
      put_seed("fuzz_resp_parser", name + suffix, c, bytes);
    }
  }
}

void reply_reader_seeds() {
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"simple", "+OK\r\n"},
      {"error", "-ERR wrong number of arguments\r\n-MOVED 5 127.0.0.1:7001\r\n"},
      {"integer", ":42\r\n:-7\r\n:0\r\n"},
      {"bulk", "$3\r\nabc\r\n$0\r\n\r\n$-1\r\n"},
      {"array", "*2\r\n:1\r\n$1\r\na\r\n*-1\r\n*0\r\n"},
      {"nested", "*3\r\n*2\r\n:1\r\n:2\r\n*1\r\n*1\r\n+x\r\n$2\r\nhi\r\n"},
      {"tickets", "*3\r\n:100\r\n:101\r\n:102\r\n:103\r\n"},
  };
  const uint8_t ctls[] = {0x00, 0x01, 0x02, 0x82};
  for (const auto& [name, bytes] : seeds) {
    for (uint8_t c : ctls) {
      char suffix[8];
      std::snprintf(suffix, sizeof suffix, "-%02x", c);
      put_seed("fuzz_reply_reader", name + suffix, c, bytes);
    }
  }
}

std::vector<raft::Message> sample_messages() {
  std::vector<raft::Message> out;
  for (int t = 0; t < raft::kMessageTypeCount; ++t) {
    raft::Message m;
    m.type = static_cast<raft::MessageType>(t);
    m.from = 1;
    m.to = 2;
    m.term = 7 + static_cast<uint64_t>(t);
    m.log_term = 6;
    m.index = 100;
    m.commit = 99;
    m.reject = t % 2 == 1;
    m.transfer = t == 2;
    m.hint_index = m.reject ? 90 : 0;
    m.hint_term = m.reject ? 5 : 0;
    if (m.type == raft::MessageType::kAppend) {
      for (uint64_t i = 0; i < 3; ++i) {
        raft::Entry e;
        e.term = 7;
        e.index = 101 + i;
        e.type = i == 0 ? raft::EntryType::kNoop : raft::EntryType::kNormal;
        if (i > 0) e.data = std::string("\x05\0\0\0\0\0\0\0", 8);
        m.entries.push_back(e);
      }
    }
    if (m.type == raft::MessageType::kInstallSnapshot) {
      raft::Snapshot s;
      s.index = 100;
      s.term = 6;
      s.configuration.servers = {{1, raft::Suffrage::kVoter, "127.0.0.1:7001"},
                                 {2, raft::Suffrage::kVoter, "127.0.0.1:7002"},
                                 {3, raft::Suffrage::kNonVoter, ""}};
      s.data = "counter=12345";
      m.snapshot = s;
    }
    out.push_back(std::move(m));
  }
  return out;
}

void raft_codec_seeds() {
  int i = 0;
  for (const raft::Message& m : sample_messages()) {
    std::string enc;
    raft::encode(m, &enc);
    put_seed("fuzz_raft_codec", "msg" + std::to_string(i) + "-fix", 0x01, enc);
    put_seed("fuzz_raft_codec", "msg" + std::to_string(i) + "-raw", 0x00, enc);
    ++i;
  }
}

// fuzz_raft_node: op sequences (see its header). A field message is: op 1, type, who,
// then modes for term, index, log_term, commit (0 = the node's own value, 1|k<<2 = +k), flags,
// and for an append a count of entries and each entry's shape.
void raft_node_seeds() {
  auto msg = [](raft::MessageType t, uint8_t from, uint8_t term_mode) {
    return std::string{1, static_cast<char>(t), static_cast<char>(from), static_cast<char>(term_mode),
                       0, 0, 0, 0};
  };
  const std::string tick32 = "\xF8";
  const std::string ready = "\x03";
  std::string elect = tick32 + tick32 + ready + msg(raft::MessageType::kPreVoteResp, 2, 5) + ready +
                      msg(raft::MessageType::kVoteResp, 2, 0) + ready + ready;
  std::string lead = elect + "\x05" + ready + msg(raft::MessageType::kAppendResp, 2, 0) + ready +
                     "\x05\x05" + ready + "\x07" + msg(raft::MessageType::kHeartbeatResp, 3, 0) + ready;
  put_seed("fuzz_raft_node", "elect", 0x00, elect);
  put_seed("fuzz_raft_node", "lead-and-compact", 0x00, lead);
  put_seed("fuzz_raft_node", "lead-deferred-restart", 0x02,
           elect + "\x05\x0B\x05\x0B\x04" + msg(raft::MessageType::kAppendResp, 3, 0) + "\x06" + ready);
  // A follower: appends (with one normal entry, then a configuration) from leader 2 at term+1.
  std::string follow = msg(raft::MessageType::kAppend, 2, 5);
  follow.back() = 0;
  follow += std::string("\x01\x00", 2);  // one entry, plain shape
  follow += ready + msg(raft::MessageType::kHeartbeat, 2, 0) + ready;
  std::string conf = msg(raft::MessageType::kAppend, 2, 0);
  conf += std::string("\x01\x08\x07", 3);  // one ConfChange entry naming {1,2,3}
  put_seed("fuzz_raft_node", "follow", 0x00, follow + conf + ready + tick32 + ready);
  // A --join node hears from a leader it does not know yet, then gets a snapshot.
  put_seed("fuzz_raft_node", "join", 0x01,
           follow + conf + ready + msg(raft::MessageType::kInstallSnapshot, 2, 0) + std::string("\x05\x00\x07", 3) + ready);
  // Outsiders and a removed server's votes.
  put_seed("fuzz_raft_node", "outsiders", 0x00,
           msg(raft::MessageType::kVote, 4, 9) + ready + msg(raft::MessageType::kPreVote, 5, 5) + ready +
               msg(raft::MessageType::kHeartbeat, 4, 5) + ready + tick32 + tick32 + msg(raft::MessageType::kHeartbeat, 4, 5) + ready);
  std::string enc;
  raft::Message hb;
  hb.type = raft::MessageType::kHeartbeat;
  hb.from = 2;
  hb.to = 1;
  hb.term = 2;
  raft::encode(hb, &enc);
  std::string codec = "\x02";
  codec.push_back(static_cast<char>(enc.size() & 0xff));
  codec.push_back(static_cast<char>(enc.size() >> 8));
  put_seed("fuzz_raft_node", "codec", 0x00, codec + enc + ready);
}

void peer_frames_seeds() {
  cluster::PeerHello h{42, 2, 777, "127.0.0.1:7002", "127.0.0.1:17002"};
  std::string hello;
  cluster::append_hello_frame(h, &hello);
  put_seed("fuzz_peer_frames", "hello-fix", 0x80, hello);
  put_seed("fuzz_peer_frames", "hello-bytes", 0x81, hello);
  std::string stream = hello;
  for (const raft::Message& m : sample_messages()) {
    if (!cluster::append_message_frame(m, 4096, &stream)) std::abort();
  }
  cluster::append_refuse_frame("cluster id mismatch", &stream);
  put_seed("fuzz_peer_frames", "stream-whole", 0x80, stream);
  put_seed("fuzz_peer_frames", "stream-bytes", 0x81, stream);
  put_seed("fuzz_peer_frames", "stream-chunks", 0x82, stream);
  put_seed("fuzz_peer_frames", "stream-small", 0xc2, hello + stream.substr(0, 40));
  // Wire version 2: a version 4 hello (with and without a nonce) and the WELCOME.
  cluster::PeerHello h4 = h;
  h4.wire_min = cluster::kWireVersionMin;
  h4.wire_max = cluster::kWireVersion;
  std::string hello4;
  cluster::append_hello_frame(h4, &hello4);
  h4.has_nonce = true;
  h4.nonce.fill(0x3c);
  cluster::append_hello_frame(h4, &hello4);
  cluster::append_welcome_frame(cluster::PeerWelcome{1, 2, 2}, &hello4);
  put_seed("fuzz_peer_frames", "hello4-fix", 0x80, hello4);
  put_seed("fuzz_peer_frames", "hello4-bytes", 0x81, hello4);
  std::string refuse;
  cluster::append_refuse_frame("node id 0 is not valid", &refuse);
  put_seed("fuzz_peer_frames", "refuse", 0x02, refuse);
  // The cluster-secret handshake: a version 3 hello, the challenge and the proof.
  cluster::PeerHello h3 = h;
  h3.has_nonce = true;
  h3.nonce.fill(0x5a);
  std::string hs;
  cluster::append_hello_frame(h3, &hs);
  const std::string hello3 = hs.substr(cluster::kPeerFrameHeader);
  auth::Digest key = auth::sha256("fuzz cluster secret");
  cluster::PeerChallenge ch{2, {}, {}};
  ch.nonce.fill(0xa5);
  ch.proof = cluster::handshake_proof(key, true, hello3, 2, ch.nonce);
  cluster::append_challenge_frame(ch, &hs);
  cluster::append_proof_frame(cluster::handshake_proof(key, false, hello3, 2, ch.nonce), &hs);
  put_seed("fuzz_peer_frames", "handshake-fix", 0x80, hs);
  put_seed("fuzz_peer_frames", "handshake-chunks", 0x82, hs);
}

// One chunk of the WAL target's input: [u16 LE length][i8 name delta][bytes].
std::string wal_chunk(const std::vector<std::byte>& file, int8_t delta) {
  // Trailing zeros are the preallocated fill; trimming them keeps the seed small.
  size_t end = file.size();
  while (end > 0 && file[end - 1] == std::byte{0}) --end;
  std::string out;
  uint16_t len = static_cast<uint16_t>(std::min<size_t>(end, 0xffff));
  out.append(reinterpret_cast<const char*>(&len), 2);
  out.push_back(static_cast<char>(delta));
  out.append(reinterpret_cast<const char*>(file.data()), len);
  return out;
}

void wal_seeds() {
  using namespace ticketd::storage;
  struct Shape {
    const char* name;
    uint64_t first;
    int records;
    size_t payload;
    uint8_t flags;
    int inflight = 0;  // 1: pairs of writes in flight (padded blocks), 2: the same, ending in a hole
  };
  // 8 KiB segments (as the target uses), so the larger shapes span several segment files.
  const Shape shapes[] = {
      {"one", 1, 1, 8, 0x00},         {"few", 1, 5, 8, 0x01},
      {"append", 1, 4, 16, 0x09},     {"later_start", 1000, 3, 8, 0x03},
      {"multi_seg", 1, 40, 500, 0x01}, {"spare", 7, 6, 100, 0x07},
      {"inflight_padded", 1, 8, 100, 0x08, 1}, {"inflight_hole", 1, 8, 100, 0x08, 2},
  };
  for (const Shape& sh : shapes) {
    scratch::ScratchDir dir;
    WalOptions opts;
    opts.segment_bytes = 8192;
    opts.max_write_bytes = 8192;
    opts.spare_step_bytes = 4096;
    opts.refuse_direct_io_for_testing = true;
    opts.max_writes_in_flight = sh.inflight ? 2 : 1;
    std::string wal_dir = dir.path() + "/wal";
    if (sh.inflight) {
      // Two writes in flight at a time (the second on a fresh block), completed out of order;
      // the "hole" shape's last pair loses its first write (a crash): recovery must cut there.
      std::unique_ptr<Wal> wal;
      if (!Wal::open(wal_dir, opts, &wal, nullptr, nullptr).is_ok()) std::exit(1);
      for (int i = 0; i < sh.records; i += 2) {
        std::vector<std::byte> payload(sh.payload, static_cast<std::byte>(i + 1));
        WalWriteOp ops[2];
        for (int k = 0; k < 2; ++k) {
          wal->append(1, 1, sh.first + static_cast<uint64_t>(i + k), payload);
          ops[k] = *wal->begin_write();
        }
        bool hole = sh.inflight == 2 && i + 2 >= sh.records;
        for (int k = 1; k >= (hole ? 1 : 0); --k) {
          if (::pwrite(ops[k].fd, ops[k].buf, ops[k].len, static_cast<off_t>(ops[k].offset)) !=
                  static_cast<ssize_t>(ops[k].len) ||
              ::fdatasync(ops[k].fd) != 0) {
            std::exit(1);
          }
        }
        if (hole) break;
        for (int k = 1; k >= 0; --k) (void)wal->end_write(ops[k].last_index, ops[k].len);
      }
    } else {
      std::unique_ptr<Wal> wal;
      Status s = Wal::open(wal_dir, opts, &wal, nullptr, nullptr);
      if (!s) {
        std::fprintf(stderr, "wal open: %s\n", s.message().c_str());
        std::exit(1);
      }
      for (int i = 0; i < sh.records; ++i) {
        std::vector<std::byte> payload(sh.payload);
        for (size_t j = 0; j < payload.size(); ++j) {
          payload[j] = static_cast<std::byte>(j + static_cast<size_t>(i));
        }
        wal->append(static_cast<uint8_t>(i % 3), 1 + static_cast<uint64_t>(i) / 4,
                    sh.first + static_cast<uint64_t>(i), payload);
        if (i % 3 == 2 && !wal->sync_write().is_ok()) std::exit(1);
      }
      if (!wal->sync_write().is_ok()) std::exit(1);
    }
    std::vector<std::string> names = scratch::list_dir(wal_dir);
    std::sort(names.begin(), names.end());
    std::string input;
    int chunks = 0;
    for (const std::string& n : names) {
      if (n.rfind("wal-", 0) != 0 || chunks == 4) continue;
      input += wal_chunk(scratch::read_bytes(wal_dir + "/" + n), 0);
      ++chunks;
    }
    put_seed("fuzz_wal_recovery", sh.name, sh.flags, input);
  }

  // A hard-state file and a snapshot file, each as a whole input (flags pick the loaders).
  {
    scratch::ScratchDir dir;
    std::string path = dir.path() + "/hs";
    std::unique_ptr<HardStateFile> f;
    HardState st;
    bool found;
    if (!HardStateFile::open(path, &f, &st, &found, true).is_ok()) std::exit(1);
    st.term = 5;
    st.vote = 2;
    st.commit = 40;
    st.blob = {std::byte{1}, std::byte{2}, std::byte{3}};
    if (!f->save(st).is_ok()) std::exit(1);
    st.term = 6;
    if (!f->save(st).is_ok()) std::exit(1);
    f.reset();
    put_seed("fuzz_wal_recovery", "hard_state", 0x20, to_string(scratch::read_bytes(path)));
  }
  {
    scratch::ScratchDir dir;
    std::string path = dir.path() + "/snap";
    std::string blob = "snapshot: index 100 term 6 counter 12345";
    std::vector<std::byte> data(blob.size());
    std::memcpy(data.data(), blob.data(), blob.size());
    if (!SnapshotFile::save(path, data).is_ok()) std::exit(1);
    put_seed("fuzz_wal_recovery", "snapshot", 0x40, to_string(scratch::read_bytes(path)));
  }
}

// fuzz_tickets: [ctl][records: u8 kind (0 snapshot, else entry), u16 length, bytes].
void tickets_seeds() {
  using namespace ticketd::tickets;
  auto rec = [](uint8_t kind, const std::string& b) {
    std::string r(1, static_cast<char>(kind));
    r.push_back(static_cast<char>(b.size() & 0xff));
    r.push_back(static_cast<char>(b.size() >> 8));
    return r + b;
  };
  std::string legacy(8, '\0');
  legacy[0] = 5;
  put_seed("fuzz_tickets", "legacy_entry", 0, rec(1, legacy) + rec(0, legacy));
  StateMachine sm;
  std::string s = rec(1, encode(Command::create("orders", 100)));
  s += rec(1, encode(Command::allocate({{"default", 3}, {"orders", 2}})));
  s += rec(1, encode(Command::floor("orders", 500)));
  s += rec(1, encode(Command::allocate({{"orders", 1}, {"nope", 1}})));
  sm.apply(1, Command::create("orders", 100));
  sm.apply(2, Command::allocate({{"default", 3}, {"orders", 2}}));
  s += rec(0, sm.encode_snapshot());
  s += rec(1, encode(Command::drop("orders")));
  s += rec(1, encode(Command::create("orders", 1)));
  put_seed("fuzz_tickets", "mixed", 1, s);
  // Window mode (issue 15): a window sequence, reservations (one shrunk by a floor), an
  // allocate above them, a version-3 snapshot with mode and reservation, and a version-2 one.
  StateMachine w;
  std::string ws;
  std::vector<Command> cmds = {Command::create_window("win", 10, 100), Command::reserve("win", 109),
                               Command::floor("win", 150), Command::reserve("win", 140),
                               Command::allocate({{"win", 2}, {"default", 1}}),
                               Command::reserve("default", 50), Command::reserve("nope", 5)};
  uint64_t idx = 0;
  for (const Command& c : cmds) {
    ws += rec(1, encode(c));
    w.apply(++idx, c);
  }
  ws += rec(0, w.encode_snapshot());
  ws += rec(1, encode(Command::reserve("win", 1000)));
  // Version 2: [2][count 1]{7 "default" last issued created_index}[sum, rewritten: ctl bit 0].
  std::string v2("\x02\x01\x00\x00\x00\x07\x00" "default", 14);
  v2 += std::string(24 + 8, '\0');
  v2[14] = 7;  // last = 7
  ws += rec(0, v2);
  put_seed("fuzz_tickets", "window", 1, ws);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  resp_parser_seeds();
  reply_reader_seeds();
  raft_codec_seeds();
  raft_node_seeds();
  peer_frames_seeds();
  wal_seeds();
  tickets_seeds();
  return 0;
}
