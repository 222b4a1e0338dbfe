// Admin commands (run on shard 0): RAFT.* and the INFO raft section.
#include "raft_ticket_log.h"

#include "../server/cluster_api.h"
#include "ticketd/resp/parser.h"
#include "ticketd/resp/writer.h"

namespace ticketd::cluster {

bool RaftTicketLog::redirect_if_follower(const AdminRequest& req) {
  if (raft_->role() == raft::Role::kLeader) return false;
  uint64_t leader = raft_->leader_id();
  std::string addr = leader == raft::kNoId ? std::string() : service_addr_of(leader);
  if (addr.empty()) {
    reply_error(req, "CLUSTERDOWN no leader");
  } else {
    // The slot of the command's key (a sequence name), else plain TICKET's: cluster clients
    // remember the new owner of that slot.
    bool keyed = is_sequence_command(req.args[0]) && req.args.size() > 1;
    uint16_t slot = keyed ? server::key_hash_slot(req.args[1]) : server::default_slot();
    reply_error(req, "MOVED " + std::to_string(slot) + " " + addr);
  }
  return true;
}

void RaftTicketLog::admin_membership(AdminRequest&& req, raft::ConfChangeRequest cc,
                                     std::string ok, bool confirm) {
  if (redirect_if_follower(req)) return;
  raft::ProposeResult r = raft_->propose_conf_change(cc);
  switch (r.status) {
    case raft::ProposeStatus::kOk:
      admin_waiters_.push_back(AdminWaiter{r.index, r.term, std::move(req), std::move(ok), now_ms(),
                                           confirm ? cc.id : 0});
      return;
    case raft::ProposeStatus::kChangePending:
      reply_error(req, "ERR a configuration change is in progress; try again");
      return;
    case raft::ProposeStatus::kTransferInProgress:
      reply_error(req, "ERR leadership transfer in progress; try again");
      return;
    case raft::ProposeStatus::kInvalid:
      reply_error(req, "ERR invalid configuration change");
      return;
    case raft::ProposeStatus::kNotLeader:
      redirect_if_follower(req);
      return;
  }
}

std::string RaftTicketLog::check_new_member(uint64_t id, const std::string& raft_addr,
                                            const std::string& service_addr) const {
  std::string taken = address_taken(id, raft_addr, service_addr);
  if (!taken.empty()) return taken;
  if (raft_->configuration().servers.size() >= raft::kMaxServers) {
    return "ERR the configuration is full (" + std::to_string(raft::kMaxServers) + " servers)";
  }
  return "";
}

std::string RaftTicketLog::address_taken(uint64_t id, const std::string& raft_addr,
                                         const std::string& service_addr) const {
  // Two members on one address would each take the other's links and clients.
  for (const raft::Server& s : raft_->configuration().servers) {
    if (s.id == id) continue;
    ServerContext ctx = decode_context(s.context);
    if (ctx.raft_addr == raft_addr) {
      return "ERR raft address " + raft_addr + " belongs to node " + std::to_string(s.id);
    }
    if (!service_addr.empty() && ctx.service_addr == service_addr) {
      return "ERR service address " + service_addr + " belongs to node " + std::to_string(s.id);
    }
  }
  return "";
}

void RaftTicketLog::admin_addvoter(AdminRequest&& req) {
  // RAFT.ADDVOTER id raft_addr [service_addr]: every argument is checked before anything
  // is proposed, and an existing member is never silently "added" again.
  uint64_t id = 0;
  if (req.args.size() < 3 || req.args.size() > 4 || !parse_u64(req.args[1], &id) || id == 0) {
    reply_error(req, "ERR usage: RAFT.ADDVOTER id raft_addr [service_addr]");
    return;
  }
  std::string bad = check_server_addr(req.args[2], "raft address");
  if (bad.empty() && req.args.size() == 4) bad = check_server_addr(req.args[3], "service address");
  if (!bad.empty()) {
    reply_error(req, bad);
    return;
  }
  if (redirect_if_follower(req)) return;
  std::string ok;
  resp::append_simple(ok, "OK");
  if (const raft::Server* s = raft_->configuration().find(id)) {
    ServerContext ctx = decode_context(s->context);
    if (ctx.raft_addr != req.args[2]) {
      reply_error(req, "ERR node " + std::to_string(id) + " is already a member at " +
                           ctx.raft_addr + " (a member's address changes when it restarts with "
                           "the new --raddr; to replace it, RAFT.REMOVESERVER " +
                           std::to_string(id) + " first)");
      return;
    }
    reply(req, ok);  // already a member at that address (it is promoted once caught up)
    return;
  }
  std::string service = req.args.size() == 4 ? req.args[3] : "";
  // The node must answer before this is +OK: one that founded a cluster of its own (started
  // without --join or --no-bootstrap) or that is not running can never join.
  add_member(std::move(req), id, ServerContext{req.args[2], service, 0}, ok, true);
}

void RaftTicketLog::add_member(AdminRequest&& req, uint64_t id, const ServerContext& ctx,
                               std::string ok, bool confirm) {
  std::string bad = check_new_member(id, ctx.raft_addr, ctx.service_addr);
  if (!bad.empty()) {
    reply_error(req, bad);
    return;
  }
  raft::ConfChangeRequest cc;
  cc.kind = raft::ConfChangeRequest::Kind::kAddNonVoter;
  cc.id = id;
  cc.context = encode_context(ctx);
  admin_membership(std::move(req), cc, std::move(ok), confirm);
}

void RaftTicketLog::admin_removeserver(AdminRequest&& req) {
  // RAFT.REMOVESERVER id [raft_addr]: with an address, only if it is that member's.
  uint64_t id = 0;
  if (req.args.size() < 2 || req.args.size() > 3 || !parse_u64(req.args[1], &id) || id == 0) {
    reply_error(req, "ERR usage: RAFT.REMOVESERVER id [raft_addr]");
    return;
  }
  if (redirect_if_follower(req)) return;
  const raft::Server* s = raft_->configuration().find(id);
  if (s == nullptr) {
    reply_error(req, "ERR node " + std::to_string(id) + " is not in the configuration");
    return;
  }
  if (req.args.size() == 3) {
    ServerContext ctx = decode_context(s->context);
    if (ctx.raft_addr != req.args[2]) {
      reply_error(req, "ERR node " + std::to_string(id) + " is at " + ctx.raft_addr + ", not " +
                           req.args[2]);
      return;
    }
  }
  raft::ConfChangeRequest cc;
  cc.kind = raft::ConfChangeRequest::Kind::kRemove;
  cc.id = id;
  std::string ok;
  resp::append_simple(ok, "OK");
  admin_membership(std::move(req), cc, ok);
}

void RaftTicketLog::admin_join(AdminRequest&& req) {
  // RAFT.JOIN id raft_addr service_addr incarnation [proof] (sent by a node started with
  // --join; the proof of the cluster secret is required when this node has one).
  uint64_t id = 0;
  if ((req.args.size() != 5 && req.args.size() != 6) || !parse_u64(req.args[1], &id) || id == 0) {
    reply_error(req, "ERR usage: RAFT.JOIN id raft_addr service_addr incarnation [proof]");
    return;
  }
  if (const auto& key = node_.opts().cluster_secret) {
    auth::Digest proof{};
    if (req.args.size() != 6 || !auth::parse_hex_digest(req.args[5], &proof) ||
        !auth::equal_constant_time(proof, join_proof(*key, req.args[1], req.args[2], req.args[3],
                                                     req.args[4]))) {
      reply_error(req, "ERR RAFT.JOIN needs proof of the cluster secret: start the joining node "
                       "with this cluster's --cluster-secret-file");
      return;
    }
  }
  std::string bad = check_server_addr(req.args[2], "raft address");
  if (bad.empty()) bad = check_server_addr(req.args[3], "service address");
  if (!bad.empty()) {
    reply_error(req, bad);
    return;
  }
  if (redirect_if_follower(req)) return;
  std::string ok;
  resp::append_simple(ok, "OK " + hex(cluster_id_));
  uint64_t inc = parse_hex(req.args[4]);
  if (const raft::Server* s = raft_->configuration().find(id)) {
    ServerContext ctx = decode_context(s->context);
    if (ctx.incarnation != 0 && ctx.incarnation != inc) {
      reply_error(req, "ERR node " + std::to_string(id) +
                           " is already a member with another incarnation (was its data "
                           "directory wiped?); remove it first with RAFT.REMOVESERVER " +
                           std::to_string(id));
      return;
    }
    reply(req, ok);  // already a member: joining again is a no-op
    return;
  }
  add_member(std::move(req), id, ServerContext{req.args[2], req.args[3], inc}, ok, false);
}

std::string RaftTicketLog::configuration_reply() {
  std::string out;
  const raft::Configuration& conf = raft_->configuration();
  resp::append_array_header(out, conf.servers.size());
  for (const raft::Server& s : conf.servers) {
    ServerContext ctx = decode_context(s.context);
    resp::append_array_header(out, 8);
    resp::append_bulk(out, "id");
    resp::append_bulk(out, std::to_string(s.id));
    resp::append_bulk(out, "address");
    resp::append_bulk(out, ctx.raft_addr);
    resp::append_bulk(out, "service_address");
    resp::append_bulk(out, service_addr_of(s.id));
    resp::append_bulk(out, "suffrage");
    resp::append_bulk(out, s.suffrage == raft::Suffrage::kVoter ? "Voter" : "Nonvoter");
  }
  return out;
}

std::string RaftTicketLog::stats_reply() {
  std::vector<std::pair<std::string, std::string>> kv;
  auto add = [&](const char* k, std::string v) { kv.emplace_back(k, std::move(v)); };
  add("applied_index", std::to_string(applied_index_));
  add("commit_index", std::to_string(raft_->commit_index()));
  add("fsm_pending", std::to_string(proposals_.size()));
  uint64_t lc = raft_->role() == raft::Role::kLeader ? 0 : raft_->ticks_since_leader_contact();
  add("last_contact", raft_->role() == raft::Role::kLeader ? "0" : std::to_string(lc * 10) + "ms");
  add("last_log_index", std::to_string(raft_->last_index()));
  add("last_log_term", std::to_string(raft_->last_term()));
  add("last_snapshot_index", std::to_string(raft_->snapshot_index()));
  add("last_snapshot_term", std::to_string(raft_->snapshot_term()));
  std::string conf = "[";
  for (const raft::Server& s : raft_->configuration().servers) {
    if (conf.size() > 1) conf += " ";
    // Appended piece by piece: GCC 12's -O3 reports a false -Wrestrict on "{" + std::string(..).
    conf += '{';
    conf += s.suffrage == raft::Suffrage::kVoter ? "Voter" : "Nonvoter";
    conf += ' ';
    conf += std::to_string(s.id);
    conf += ' ';
    conf += decode_context(s.context).raft_addr;
    conf += '}';
  }
  conf += "]";
  add("latest_configuration", conf);
  add("latest_configuration_index", std::to_string(raft_->configuration_index()));
  add("num_peers", std::to_string(raft_->configuration().servers.empty()
                                      ? 0
                                      : raft_->configuration().servers.size() - 1));
  add("protocol_version", "1");
  add("state", raft::to_string(raft_->role()));
  add("term", std::to_string(raft_->term()));
  add("leader_id", std::to_string(raft_->leader_id()));
  add("durable_index", std::to_string(wal_->durable_index()));
  add("last_ticket", std::to_string(last_ticket()));
  add("leader_changes_seen", std::to_string(leader_changes_));
  const PeerTransport::Stats& ts = transport_->stats();
  add("peer_msgs_sent", std::to_string(ts.sent_msgs));
  add("peer_msgs_received", std::to_string(ts.recv_msgs));
  add("peer_msgs_dropped", std::to_string(ts.dropped_msgs));
  add("peer_msgs_refused_malformed", std::to_string(raft_->refused(raft::StepStatus::kMalformed)));
  add("peer_msgs_refused_outsider", std::to_string(raft_->refused(raft::StepStatus::kOutsider)));
  add("peer_msgs_refused_conflict", std::to_string(raft_->refused(raft::StepStatus::kConflict)));
  add("peer_conns_refused", std::to_string(ts.refused_conns));
  add("peer_hello_timeouts", std::to_string(ts.hello_timeouts));
  add("peer_hellos_refused", std::to_string(ts.refused_hellos));
  add("peer_auth_failures", std::to_string(ts.auth_failures));
  add("peer_auth", transport_ != nullptr && node_.opts().cluster_secret ? "secret" : "none");
  std::string out;
  resp::append_array_header(out, kv.size() * 2);
  for (auto& [k, v] : kv) {
    resp::append_bulk(out, k);
    resp::append_bulk(out, v);
  }
  return out;
}

std::string RaftTicketLog::info_raft() {
  std::string r = "# Raft\r\n";
  auto add = [&](const std::string& k, const std::string& v) { r += k + ":" + v + "\r\n"; };
  add("raft_state", raft::to_string(raft_->role()));
  add("raft_node_id", std::to_string(node_.opts().id));
  add("raft_leader_id", std::to_string(raft_->leader_id()));
  add("raft_leader_address", raft_->leader_id() == raft::kNoId ? "" : service_addr_of(raft_->leader_id()));
  add("raft_term", std::to_string(raft_->term()));
  add("raft_commit_index", std::to_string(raft_->commit_index()));
  add("raft_applied_index", std::to_string(applied_index_));
  add("raft_last_log_index", std::to_string(raft_->last_index()));
  add("raft_snapshot_index", std::to_string(raft_->snapshot_index()));
  add("raft_num_servers", std::to_string(raft_->configuration().servers.size()));
  add("raft_num_voters", std::to_string(raft_->configuration().voter_count()));
  add("raft_leader_changes_seen", std::to_string(leader_changes_));
  add("raft_cluster_id", hex(cluster_id_));
  return r;
}

void RaftTicketLog::admin(AdminRequest&& req) {
  std::string out;
  const std::string& cmd = req.args[0];
  auto is = [&](const char* name) { return resp::iequals(cmd, name); };
  if (is("RAFT.CONFIGURATION")) {
    reply(req, configuration_reply());
  } else if (is("RAFT.STATS")) {
    reply(req, stats_reply());
  } else if (is("RAFT.LEADER")) {
    uint64_t l = raft_->leader_id();
    std::string addr = l == raft::kNoId ? "" : service_addr_of(l);
    if (addr.empty()) {
      reply_error(req, "CLUSTERDOWN no leader");
    } else {
      resp::append_bulk(out, addr);
      reply(req, std::move(out));
    }
  } else if (is("RAFT.LASTCONTACT")) {
    // Milliseconds since this node last heard from a leader; 0 on the leader itself.
    uint64_t ms = raft_->role() == raft::Role::kLeader ? 0 : raft_->ticks_since_leader_contact() * 10;
    resp::append_integer(out, static_cast<int64_t>(ms));
    reply(req, std::move(out));
  } else if (is("RAFT.SNAPSHOT")) {
    maybe_snapshot(true);
    if (snapshot_saving_) {
      snapshot_waiters_.push_back(std::move(req));  // answered once it is durable
    } else {
      resp::append_simple(out, "OK");
      reply(req, std::move(out));
    }
  } else if (is("RAFT.ADDVOTER")) {
    admin_addvoter(std::move(req));
  } else if (is("RAFT.REMOVESERVER")) {
    admin_removeserver(std::move(req));
  } else if (is("RAFT.TRANSFERLEADER")) {
    uint64_t id = 0;
    if (req.args.size() != 2 || !parse_u64(req.args[1], &id) || id == 0) {
      reply_error(req, "ERR usage: RAFT.TRANSFERLEADER id");
      return;
    }
    if (redirect_if_follower(req)) return;
    if (id == node_.opts().id) {
      resp::append_simple(out, "OK");
      reply(req, std::move(out));
      return;
    }
    if (!raft_->transfer_leadership(id)) {
      reply_error(req, "ERR node " + std::to_string(id) + " is not a voter");
      return;
    }
    resp::append_simple(out, "OK");
    reply(req, std::move(out));
  } else if (is("RAFT.JOIN")) {
    admin_join(std::move(req));
  } else if (is_cluster_command(cmd)) {
    admin_cluster(std::move(req));  // CLUSTER ..., ROLE (cluster_commands.cpp)
  } else if (is_sequence_command(cmd)) {
    admin_sequence(std::move(req));  // TICKET.CREATE/DROP/FLOOR/LIST/INFO (sequences_admin.cpp)
  } else if (is("INFO")) {
    // The shard built the other sections; shard 0 adds the raft one.
    resp::append_bulk(out, req.args.size() > 1 ? req.args[1] + info_raft() : info_raft());
    reply(req, std::move(out));
  } else {
    reply_error(req, "ERR unknown admin command '" + cmd + "'");
  }
  pump();
  transport_->flush();
}


}  // namespace ticketd::cluster
