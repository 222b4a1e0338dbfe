// CLUSTER SLOTS/SHARDS/NODES/INFO/MYID/MYSHARDID/REPLICAS and ROLE (run on shard 0), and the
// figures INFO replication shows. The cluster is ONE Redis Cluster shard that owns all 16,384
// slots: its master is the Raft leader, its replicas the other members, each at its client
// (service) address, so redis-py's RedisCluster, ioredis's Cluster and node-redis's
// createCluster send every ticket to the leader and find the next one after a failover
// (-MOVED, or a refresh of these replies). Node ids are 40 hex digits derived from the cluster
// id and the node id, the same on every member and across restarts.
//
// While this node knows no leader (an election), the last leader it knew is still shown as
// the master, marked `fail?` (as Redis shows a master it cannot reach): a client then keeps a
// full slot table, retries, and refreshes it, instead of giving up on a cluster with no
// slots. CLUSTER INFO says cluster_state:fail meanwhile. A node that never knew a leader (just
// joined) answers SLOTS and SHARDS with -CLUSTERDOWN, so the client asks another member.
#include "../server/cluster_api.h"
#include "raft_ticket_log.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "ticketd/io/loop.h"
#include "ticketd/resp/parser.h"
#include "ticketd/resp/writer.h"

namespace ticketd::cluster {

namespace {

constexpr uint64_t kTickMs = kTickNs / 1'000'000;

std::string hex_id(uint64_t cluster_id, uint64_t node_id) {
  char buf[41];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64 "%024" PRIx64, cluster_id, node_id);
  return buf;
}

uint64_t wall_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

// One CLUSTER SLOTS node: ip, port, id, and Redis 7's (empty) networking metadata map.
void append_slots_node(std::string& out, const std::string& host, uint16_t port,
                       const std::string& id) {
  resp::append_array_header(out, 4);
  resp::append_bulk(out, host);
  resp::append_integer(out, port);
  resp::append_bulk(out, id);
  resp::append_array_header(out, 0);
}

}  // namespace

bool RaftTicketLog::is_cluster_command(std::string_view cmd) {
  return resp::iequals(cmd, "CLUSTER") || resp::iequals(cmd, "ROLE");
}

std::string RaftTicketLog::cluster_node_id(uint64_t id) const { return hex_id(cluster_id_, id); }

std::vector<RaftTicketLog::ShardMember> RaftTicketLog::shard_members() const {
  // The master shown: the leader, else the last leader known while it is still a member.
  const raft::Configuration& conf = raft_->configuration();
  uint64_t shown = raft_->leader_id() != raft::kNoId ? raft_->leader_id() : known_leader_;
  if (conf.find(shown) == nullptr) shown = raft::kNoId;
  bool leading = raft_->role() == raft::Role::kLeader;
  std::vector<raft::PeerProgress> progress = leading ? raft_->progress() : std::vector<raft::PeerProgress>{};
  std::vector<ShardMember> out;
  for (const raft::Server& s : conf.servers) {
    ShardMember m;
    m.id = s.id;
    // A member whose client address we do not know (yet) cannot be a redirect target.
    if (!io::parse_host_port(service_addr_of(s.id), &m.host, &m.port) || m.host.empty() ||
        m.port == 0) {
      continue;
    }
    std::string raft_host;
    if (!io::parse_host_port(decode_context(s.context).raft_addr, &raft_host, &m.bus_port)) m.bus_port = 0;
    m.myself = s.id == node_.opts().id;
    m.master = s.id == shown;
    m.link_up = m.myself || (transport_ != nullptr && transport_->connected(s.id));
    if (m.myself) {
      m.offset = raft_->last_index();
    } else if (m.master) {
      m.offset = raft_->commit_index();  // what we know it has: at least what it committed
    }
    for (const raft::PeerProgress& p : progress) {
      if (p.id == s.id) m.offset = p.match;
    }
    out.push_back(std::move(m));
  }
  // The master first: SLOTS, SHARDS and NODES list it before its replicas.
  std::stable_partition(out.begin(), out.end(), [](const ShardMember& m) { return m.master; });
  return out;
}

std::string RaftTicketLog::cluster_nodes_text(const std::vector<ShardMember>& members) const {
  // <id> <ip:port@bus-port> <flags> <master> <ping-sent> <pong-recv> <config-epoch>
  // <link-state> <slot>...: one line per member, each ending in \n, as Redis 7 writes it.
  bool has_master = !members.empty() && members.front().master;
  bool leader_known = raft_->leader_id() != raft::kNoId;
  std::string master_id = has_master ? cluster_node_id(members.front().id) : "-";
  std::string term = std::to_string(raft_->term());
  uint64_t now = wall_ms();
  std::string r;
  for (const ShardMember& m : members) {
    r += cluster_node_id(m.id) + " " + m.host + ":" + std::to_string(m.port) + "@" +
         std::to_string(m.bus_port) + " ";
    std::string flags = m.myself ? "myself," : "";
    flags += m.master || !has_master ? "master" : "slave";
    if (!m.link_up || (m.master && !leader_known)) flags += ",fail?";
    r += flags + " " + (m.master || !has_master ? std::string("-") : master_id);
    r += m.myself ? " 0 0 " : " 0 " + std::to_string(m.link_up ? now : 0) + " ";
    r += term + (m.link_up ? " connected" : " disconnected");
    if (m.master) r += " 0-" + std::to_string(server::kClusterSlots - 1);
    r += "\n";
  }
  return r;
}

std::string RaftTicketLog::cluster_info_text(const std::vector<ShardMember>& members) const {
  bool ok = raft_->leader_id() != raft::kNoId;
  bool has_master = !members.empty() && members.front().master;
  uint64_t assigned = has_master ? server::kClusterSlots : 0;
  const PeerTransport::Stats& ts = transport_->stats();
  std::string r;
  auto add = [&](const char* k, uint64_t v) { r += std::string(k) + ":" + std::to_string(v) + "\r\n"; };
  r += std::string("cluster_state:") + (ok ? "ok" : "fail") + "\r\n";
  add("cluster_slots_assigned", assigned);
  add("cluster_slots_ok", ok ? assigned : 0);
  add("cluster_slots_pfail", ok ? 0 : assigned);
  add("cluster_slots_fail", 0);
  add("cluster_known_nodes", members.size());
  add("cluster_size", has_master ? 1 : 0);
  add("cluster_current_epoch", raft_->term());
  add("cluster_my_epoch", raft_->term());
  add("cluster_stats_messages_sent", ts.sent_msgs);
  add("cluster_stats_messages_received", ts.recv_msgs);
  add("total_cluster_links_buffer_limit_exceeded", 0);
  return r;
}

void RaftTicketLog::admin_cluster(AdminRequest&& req) {
  // The client's shard checked the subcommand and its arity (src/server/cluster_api.cpp).
  const std::vector<std::string>& a = req.args;
  std::string out;
  if (resp::iequals(a[0], "ROLE")) {
    server::ReplicationView v = replication_view();
    if (v.master) {
      resp::append_array_header(out, 3);
      resp::append_bulk(out, "master");
      resp::append_integer_u64(out, v.offset);
      resp::append_array_header(out, v.replicas.size());
      for (const server::ReplicationView::Replica& rep : v.replicas) {
        resp::append_array_header(out, 3);
        resp::append_bulk(out, rep.host);
        resp::append_bulk(out, std::to_string(rep.port));
        resp::append_bulk(out, std::to_string(rep.offset));
      }
    } else {
      resp::append_array_header(out, 5);
      resp::append_bulk(out, "slave");
      resp::append_bulk(out, v.master_host);
      resp::append_integer(out, v.master_port);
      resp::append_bulk(out, v.master_link_up ? "connected" : "connect");
      resp::append_integer_u64(out, v.offset);
    }
    reply(req, std::move(out));
    return;
  }
  std::string_view sub = a.size() > 1 ? std::string_view(a[1]) : std::string_view();
  auto is = [&](const char* name) { return resp::iequals(sub, name); };
  if (is("MYID")) {
    resp::append_bulk(out, cluster_node_id(node_.opts().id));
    reply(req, std::move(out));
    return;
  }
  if (is("MYSHARDID")) {
    resp::append_bulk(out, hex_id(cluster_id_, 0));  // no node has id 0
    reply(req, std::move(out));
    return;
  }
  std::vector<ShardMember> members = shard_members();
  bool has_master = !members.empty() && members.front().master;
  if (is("INFO")) {
    resp::append_bulk(out, cluster_info_text(members));
  } else if (is("NODES")) {
    resp::append_bulk(out, cluster_nodes_text(members));
  } else if (is("REPLICAS") || is("SLAVES")) {
    const ShardMember* target = nullptr;
    for (const ShardMember& m : members) {
      if (cluster_node_id(m.id) == a[2]) target = &m;
    }
    if (target == nullptr) {
      reply_error(req, "ERR Unknown node " + a[2].substr(0, 64));
      return;
    }
    if (!target->master) {
      reply_error(req, "ERR The specified node is not a master");
      return;
    }
    std::string text = cluster_nodes_text(members);
    std::vector<std::string_view> lines;
    for (size_t start = 0, nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
      lines.push_back(std::string_view(text).substr(start, nl - start));
    }
    resp::append_array_header(out, lines.size() - 1);  // every line but the master's (the first)
    for (size_t i = 1; i < lines.size(); ++i) resp::append_bulk(out, lines[i]);
  } else if (!has_master) {
    reply_error(req, "CLUSTERDOWN no leader");  // SLOTS, SHARDS: nothing to route to yet
    return;
  } else if (is("SLOTS")) {
    resp::append_array_header(out, 1);
    resp::append_array_header(out, 2 + members.size());
    resp::append_integer(out, 0);
    resp::append_integer(out, server::kClusterSlots - 1);
    for (const ShardMember& m : members) append_slots_node(out, m.host, m.port, cluster_node_id(m.id));
  } else if (is("SHARDS")) {
    resp::append_array_header(out, 1);
    resp::append_array_header(out, 4);
    resp::append_bulk(out, "slots");
    resp::append_array_header(out, 2);
    resp::append_integer(out, 0);
    resp::append_integer(out, server::kClusterSlots - 1);
    resp::append_bulk(out, "nodes");
    resp::append_array_header(out, members.size());
    for (const ShardMember& m : members) {
      resp::append_array_header(out, 14);
      resp::append_bulk(out, "id");
      resp::append_bulk(out, cluster_node_id(m.id));
      resp::append_bulk(out, "port");
      resp::append_integer(out, m.port);
      resp::append_bulk(out, "ip");
      resp::append_bulk(out, m.host);
      resp::append_bulk(out, "endpoint");
      resp::append_bulk(out, m.host);
      resp::append_bulk(out, "role");
      resp::append_bulk(out, m.master ? "master" : "replica");
      resp::append_bulk(out, "replication-offset");
      resp::append_integer_u64(out, m.offset);
      resp::append_bulk(out, "health");
      resp::append_bulk(out, m.link_up && (!m.master || raft_->leader_id() != raft::kNoId) ? "online"
                                                                                           : "failed");
    }
  } else {
    reply_error(req, "ERR unknown subcommand '" + std::string(sub.substr(0, 128)) + "'. Try CLUSTER HELP.");
    return;
  }
  reply(req, std::move(out));
}

server::ReplicationView RaftTicketLog::replication_view() const {
  server::ReplicationView v;
  v.master = raft_->role() == raft::Role::kLeader;
  v.offset = raft_->last_index();
  v.replid = hex_id(cluster_id_, 0);
  if (v.master) {
    // The followers that answered within an election timeout, as Redis lists its connected
    // replicas (one that does not answer is left out, and connected_slaves counts the rest).
    for (const raft::PeerProgress& p : raft_->progress()) {
      if (p.id == node_.opts().id || p.ticks_since_contact >= static_cast<uint64_t>(kElectionTicks)) continue;
      server::ReplicationView::Replica rep;
      if (!io::parse_host_port(service_addr_of(p.id), &rep.host, &rep.port) || rep.host.empty()) continue;
      rep.offset = p.match;
      rep.lag_s = p.ticks_since_contact * kTickMs / 1000;
      v.replicas.push_back(std::move(rep));
    }
    return v;
  }
  uint64_t leader = raft_->leader_id() != raft::kNoId ? raft_->leader_id() : known_leader_;
  if (leader != raft::kNoId && leader != node_.opts().id) {
    io::parse_host_port(service_addr_of(leader), &v.master_host, &v.master_port);
  }
  uint64_t since = raft_->ticks_since_leader_contact();
  v.master_link_up = raft_->leader_id() != raft::kNoId && since < static_cast<uint64_t>(kElectionTicks);
  v.master_last_io_s = since * kTickMs / 1000;
  return v;
}

void RaftTicketLog::publish_replication() {
  node_.publish_replication(replication_view());
  node_.publish_raft_metrics(raft_metrics_view());
}

}  // namespace ticketd::cluster
