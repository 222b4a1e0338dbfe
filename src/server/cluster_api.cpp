#include "cluster_api.h"

#include <cstdio>

#include "commands.h"
#include "node.h"
#include "shard.h"
#include "ticketd/resp/parser.h"
#include "ticketd/resp/writer.h"

namespace ticketd::server {

namespace {

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as Redis Cluster hashes keys.
// Bitwise: keys are short (sequence names are at most 128 bytes) and off the hot path.
uint16_t crc16(std::string_view s) {
  uint16_t crc = 0;
  for (char ch : s) {
    crc = static_cast<uint16_t>(crc ^ (static_cast<uint16_t>(static_cast<unsigned char>(ch)) << 8));
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) != 0 ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

// Redis 7's CLUSTER HELP, for the subcommands ticketd answers.
constexpr const char* kClusterHelp[] = {
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return the node id.",
    "MYSHARDID",
    "    Return the node's shard id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port@bus-port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "REPLICAS <node-id>",
    "    Return <node-id> replicas.",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "SLAVES <node-id>",
    "    Return <node-id> replicas.",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "(ticketd is one shard owning every slot: its master is the Raft leader, its replicas the",
    "followers; slots never move, so the commands that change them are not implemented.)",
};

struct ClusterSubcommand {
  const char* name;
  int arity;  // counting CLUSTER and the subcommand, as Redis's table does
};

// Answered on shard 0 from the Raft state (src/cluster/cluster_commands.cpp).
constexpr ClusterSubcommand kOnShard0[] = {
    {"slots", 2}, {"shards", 2}, {"nodes", 2},    {"info", 2},
    {"myid", 2},  {"myshardid", 2}, {"replicas", 3}, {"slaves", 3},
};

void wrong_subcommand_args(std::string& out, std::string_view sub) {
  std::string msg = "ERR wrong number of arguments for 'cluster|";
  for (char ch : sub) msg += static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
  msg += "' command";
  resp::append_error(out, msg);
}

}  // namespace

uint16_t key_hash_slot(std::string_view key) {
  // Only the part between the first '{' and the next '}' is hashed, if it is not empty.
  size_t open = key.find('{');
  if (open != std::string_view::npos) {
    size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return static_cast<uint16_t>(crc16(key) & (kClusterSlots - 1));
}

uint16_t default_slot() {
  static const uint16_t slot = key_hash_slot("default");
  return slot;
}

namespace cluster_api {

void cmd_cluster(Shard& s, Connection* c, Args args, std::string& out) {
  std::string_view sub = args[1];
  if (answer_help(out, args, kClusterHelp)) return;
  if (resp::iequals(sub, "KEYSLOT")) {
    if (args.size() != 3) {
      wrong_subcommand_args(out, sub);
      return;
    }
    resp::append_integer(out, key_hash_slot(args[2]));
    return;
  }
  for (const ClusterSubcommand& cmd : kOnShard0) {
    if (!resp::iequals(sub, cmd.name)) continue;
    if (static_cast<int>(args.size()) != cmd.arity) {
      wrong_subcommand_args(out, sub);
      return;
    }
    s.submit_admin(c, args);  // the reply keeps its place in the pipeline
    return;
  }
  // MEET, ADDSLOTS, FAILOVER, RESET, ...: slots and masters here are Raft's, not an operator's.
  unknown_subcommand(out, "CLUSTER", sub);
}

void cmd_role(Shard& s, Connection* c, Args args, std::string&) { s.submit_admin(c, args); }

// READONLY/READWRITE: redis-py (read_from_replicas) and ioredis (scaleReads) send them to
// replicas. Accepted so those modes connect; they change nothing: a follower redirects every
// ticket command, reads included, to the leader (no read here is served from a replica).
void cmd_readonly(Shard&, Connection*, Args, std::string& out) { resp::append_simple(out, "OK"); }
void cmd_readwrite(Shard&, Connection*, Args, std::string& out) { resp::append_simple(out, "OK"); }

std::string info_replication(Node& node) {
  ReplicationView v = node.replication();
  std::string r = "# Replication\r\n";
  auto line = [&](const char* key, const std::string& value) {
    r += key;
    r += ':';
    r += value;
    r += "\r\n";
  };
  auto num = [](uint64_t x) { return std::to_string(x); };
  line("role", v.master ? "master" : "slave");
  if (!v.master) {
    line("master_host", v.master_host);
    line("master_port", num(v.master_port));
    line("master_link_status", v.master_link_up ? "up" : "down");
    line("master_last_io_seconds_ago", v.master_link_up ? num(v.master_last_io_s) : "-1");
    line("master_sync_in_progress", "0");
    line("slave_read_repl_offset", num(v.offset));
    line("slave_repl_offset", num(v.offset));
    line("slave_priority", "100");
    line("slave_read_only", "1");
    line("replica_announced", "1");
  }
  line("connected_slaves", num(v.replicas.size()));
  for (size_t i = 0; i < v.replicas.size(); ++i) {
    const ReplicationView::Replica& rep = v.replicas[i];
    r += "slave" + num(i) + ":ip=" + rep.host + ",port=" + num(rep.port) +
         ",state=online,offset=" + num(rep.offset) + ",lag=" + num(rep.lag_s) + "\r\n";
  }
  line("master_failover_state", "no-failover");
  line("master_replid", v.replid);
  line("master_replid2", std::string(40, '0'));
  line("master_repl_offset", num(v.offset));
  line("second_repl_offset", "-1");
  r += "\r\n";
  return r;
}

std::string info_cluster() { return "# Cluster\r\ncluster_enabled:1\r\n\r\n"; }

}  // namespace cluster_api
}  // namespace ticketd::server
