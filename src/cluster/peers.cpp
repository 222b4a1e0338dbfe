// Peers: refusals, removal notices, hellos, member addresses, links, the published role.
#include "raft_ticket_log.h"


namespace ticketd::cluster {

void RaftTicketLog::note_refusal(const raft::Message& m, const raft::StepResult& r) {
  // The core refused a peer's message without touching its state. Said the first time per
  // (peer, kind of refusal), then at most every 10 s with a count: a removed node that is
  // still running sends refused votes every election timeout.
  RefusalLog& l = refusal_log_[{m.from, static_cast<uint8_t>(r.status)}];
  ++l.count;
  uint64_t now = now_ms();
  if (l.logged_ms != 0 && now - l.logged_ms < 10'000) return;
  node_.log_warning("raft: refused " + std::string(raft::to_string(m.type)) + " from node " +
                 std::to_string(m.from) + " (" + raft::to_string(r.status) + "): " + r.why +
                 (l.count > 1 ? " (" + std::to_string(l.count) + " refusals so far)" : ""));
  l.logged_ms = now;
  if (refusal_log_.size() > 256) refusal_log_.clear();  // bounded whoever sends
}

void RaftTicketLog::note_removal() {
  std::optional<raft::RemovalNotice> n = raft_->removal_notice();
  if (!n || (logged_removal_ && *logged_removal_ == *n)) return;
  logged_removal_ = n;
  if (n->from == node_.opts().id) {
    node_.log_warning("this node was removed from the cluster (its committed configuration at "
                      "index " + std::to_string(n->at_index) + " no longer holds it): stop it, "
                      "or wipe its data directory and --join it again");
  } else {
    node_.log_warning("node " + std::to_string(n->from) + " says this node is not in the cluster's "
                   "committed configuration (its commit index " + std::to_string(n->at_index) +
                   "): it was removed; stop it, or wipe its data directory and --join it again");
  }
}

void RaftTicketLog::on_peer_hello(const PeerHello& h) {
  // Only what a member (or, while we join, the leader adding us) says is remembered: an
  // unknown sender must not make us keep state of its choosing.
  const raft::Configuration& conf = raft_->configuration();
  bool member = conf.find(h.node_id) != nullptr;
  bool joining = conf.servers.empty();
  bool addrs_ok = check_server_addr(h.raft_addr, "raft address").empty() &&
                  check_server_addr(h.service_addr, "service address").empty();
  if (!addrs_ok) return;
  if (member || joining) hello_service_addr_[h.node_id] = h.service_addr;
  if (member) {
    hello_seen_[h.node_id] = ServerContext{h.raft_addr, h.service_addr, h.incarnation};
    return;
  }
  // A caller outside our configuration still needs our answers: the leader adding us
  // (before its configuration entry reaches us), or a removed node, whose refused votes
  // carry the notice that it was removed. The transport makes this a callback link: at
  // most 16, each gone when the caller's own link to us closes; sync_peers turns it into
  // an ordinary link if the caller joins our configuration.
  if (known_peers_.count(h.node_id) == 0) transport_->set_peer(h.node_id, h.raft_addr);
}

void RaftTicketLog::update_member_addresses() {
  // A member restarted with a new --raddr/--saddr announces it in its hello (and the leader
  // knows its own); the leader records it with a configuration change, so the change takes
  // effect everywhere, in log order, instead of the first start's address staying forever.
  // One change at a time; retried on the next tick while another is pending.
  if (raft_->role() != raft::Role::kLeader || shutting_down_) return;
  const raft::Configuration& conf = raft_->configuration();
  auto wanted = [&](uint64_t id, const ServerContext& now) -> std::optional<ServerContext> {
    if (id == node_.opts().id) return ServerContext{raft_addr_, service_addr_, incarnation_};
    auto it = hello_seen_.find(id);
    if (it == hello_seen_.end()) return std::nullopt;
    const ServerContext& h = it->second;
    if (now.incarnation == 0) {
      // Added by RAFT.ADDVOTER (no incarnation yet): it proved the address by dialling from
      // it; record its incarnation and service address, never a different raft address.
      if (h.raft_addr != now.raft_addr) return std::nullopt;
      return h;
    }
    if (h.incarnation != now.incarnation) return std::nullopt;  // refused at hello anyway
    return h;
  };
  for (const raft::Server& s : conf.servers) {
    ServerContext now = decode_context(s.context);
    std::optional<ServerContext> w = wanted(s.id, now);
    if (!w) continue;
    std::string ctx = encode_context(*w);
    if (ctx == s.context) {
      if (s.id != node_.opts().id) hello_seen_.erase(s.id);
      continue;
    }
    if (!address_taken(s.id, w->raft_addr, w->service_addr).empty()) {
      continue;  // would collide with another member's address: leave it to the operator
    }
    raft::ConfChangeRequest cc;
    cc.kind = raft::ConfChangeRequest::Kind::kSetContext;
    cc.id = s.id;
    cc.context = ctx;
    // Proposing replaces the configuration that `s` lives in: nothing of it is used after.
    raft::ProposeResult r = raft_->propose_conf_change(cc);
    if (r.ok()) {
      node_.log_line("recording node " + std::to_string(cc.id) + " at raft " + w->raft_addr +
                     ", service " + w->service_addr + " (was " + now.raft_addr + ", " +
                     now.service_addr + ")");
    }
    return;  // one change at a time
  }
}

void RaftTicketLog::publish() {
  log_role_changes();
  uint64_t leader = raft_->leader_id();
  if (leader != last_leader_) {
    if (leader != raft::kNoId) leader_changes_++;
    if (leader != raft::kNoId) known_leader_ = leader;  // CLUSTER SLOTS shows it during elections
    last_leader_ = leader;
  }
  ClusterRole role = ClusterRole::kNoLeader;
  if (raft_->role() == raft::Role::kLeader && !shutting_down_) {
    role = ClusterRole::kLeader;
  } else if (leader != raft::kNoId && leader != node_.opts().id) {
    role = ClusterRole::kFollower;
  } else if (!shutting_down_ && raft_->configuration().find(node_.opts().id) != nullptr) {
    role = ClusterRole::kElection;  // TICKETs wait for a leader (propose_staged)
  }
  // Cheap when nothing changed (every turn): the address is looked up only when the role,
  // the leader, the configuration or what peers told us changed.
  PublishKey key{role, leader, raft_->configuration_index(), hello_service_addr_.size()};
  if (key == published_key_) return;
  published_key_ = key;
  std::string addr = role == ClusterRole::kFollower ? service_addr_of(leader) : "";
  if (role != published_role_ || addr != published_addr_) {
    published_role_ = role;
    published_addr_ = addr;
    node_.publish_role(role, addr);
  }
}

std::string RaftTicketLog::service_addr_of(uint64_t id) const {
  if (id == node_.opts().id) return service_addr_;
  const raft::Server* s = raft_->configuration().find(id);
  if (s != nullptr) {
    ServerContext ctx = decode_context(s->context);
    if (!ctx.service_addr.empty()) return ctx.service_addr;
  }
  auto it = hello_service_addr_.find(id);
  return it == hello_service_addr_.end() ? std::string() : it->second;
}

void RaftTicketLog::sync_peers() {
  // Servers that left the configuration keep their links until the configuration that
  // removed them is committed: a leader that removed itself still needs our
  // acknowledgements to commit its removal. After that the link goes, or it would keep
  // dialling an address that may now belong to another node (a replacement on the same
  // host:port), or to nobody, for the life of the process.
  if (!departed_.empty() && raft_->commit_index() >= departed_at_) {
    for (uint64_t id : departed_) {
      if (known_peers_.count(id) != 0) continue;
      transport_->remove_peer(id);
      // Its links to us go too: if it still runs, it reconnects, and its fresh hello gets
      // it a callback link, on which our refusals of its votes tell it it was removed.
      transport_->close_inbound(id);
    }
    departed_.clear();
  }
  if (raft_->configuration_index() == peers_config_index_) return;
  peers_config_index_ = raft_->configuration_index();
  const raft::Configuration& conf = raft_->configuration();
  // What only non-members told us goes once we have a configuration of our own.
  if (!conf.servers.empty()) {
    std::erase_if(hello_service_addr_, [&](const auto& kv) { return conf.find(kv.first) == nullptr; });
    std::erase_if(hello_seen_, [&](const auto& kv) { return conf.find(kv.first) == nullptr; });
  }
  std::unordered_set<uint64_t> before;
  before.swap(known_peers_);
  for (const raft::Server& s : conf.servers) {
    if (s.id == node_.opts().id) continue;
    known_peers_.insert(s.id);
    ServerContext ctx = decode_context(s.context);
    // Never dial our own address: a configuration replayed from the log can name a removed
    // server whose address is ours now.
    if (!ctx.raft_addr.empty() && ctx.raft_addr != raft_addr_) {
      transport_->set_peer(s.id, ctx.raft_addr);
    }
  }
  for (uint64_t id : before) {
    if (known_peers_.count(id) == 0) departed_.push_back(id);
  }
  if (!departed_.empty()) departed_at_ = raft_->configuration_index();
  if (!joined_ && conf.find(node_.opts().id) != nullptr) {
    joined_ = true;
    if (join_) join_->stop();
  }
}

}  // namespace ticketd::cluster
