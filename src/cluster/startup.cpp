// Start-up: check our addresses, load (or bootstrap, or wait to join), attach to the loop.
#include "raft_ticket_log.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "../server/trace.h"
#include "ticketd/storage/snapshot_file.h"

namespace ticketd::cluster {

bool RaftTicketLog::load_state(raft::InitialState* st, bool* fresh, std::string* err) {
  const std::string dir = node_.data_dir();
  storage::HardState hs;
  bool hs_found = false;
  storage::Status s = storage::HardStateFile::open(dir + "/hardstate", &hs_file_, &hs, &hs_found);
  if (!s) {
    *err = "cannot open hard state: " + s.message();
    return false;
  }
  if (hs_found && hs.blob.size() >= 16) {
    std::memcpy(&incarnation_, hs.blob.data(), 8);
    std::memcpy(&cluster_id_, hs.blob.data() + 8, 8);
  }
  std::optional<raft::Snapshot> snap;
  snapshot_path_ = dir + "/snapshot";
  std::vector<std::byte> snap_bytes;
  s = storage::SnapshotFile::load(snapshot_path_, &snap_bytes);
  if (s) {
    raft::Snapshot sn;
    if (!decode_snapshot(std::string_view(reinterpret_cast<const char*>(snap_bytes.data()),
                                          snap_bytes.size()),
                         &sn)) {
      *err = "snapshot file " + snapshot_path_ + " does not decode";
      return false;
    }
    snap = std::move(sn);
  } else if (s.code() != storage::Status::Code::kNotFound) {
    *err = "cannot load snapshot: " + s.message();
    return false;
  }

  storage::WalOptions wo;
  wo.segment_bytes = node_.opts().wal_segment_bytes;
  wo.max_writes_in_flight = node_.opts().wal_writes_in_flight;
  wo.log = [this](std::string_view msg) { node_.log_line("wal: " + std::string(msg)); };
  storage::WalRecoveryReport report;
  std::vector<storage::WalRecord> records;
  s = storage::Wal::open(dir + "/wal", wo, &wal_, &report, &records);
  if (!s) {
    *err = "cannot open the write-ahead log: " + s.message();
    return false;
  }
  node_.log_line("recovered: " + report.describe());
  uint64_t base = snap ? snap->index : 0;
  std::vector<raft::Entry> entries;
  bool discard = false;
  for (storage::WalRecord& r : records) {
    if (r.index < base) continue;
    if (r.index == base) {
      // The log must agree with the snapshot where they meet; after a crash in the middle of
      // resetting the log to an installed snapshot, it may not: then it is stale history.
      if (snap && r.term != snap->term) discard = true;
      continue;
    }
    if (r.index != base + 1 + entries.size()) {
      discard = true;  // a gap between snapshot and log
      break;
    }
    raft::Entry e;
    e.term = r.term;
    e.index = r.index;
    e.type = static_cast<raft::EntryType>(r.type);
    e.data.assign(reinterpret_cast<const char*>(r.payload.data()), r.payload.size());
    entries.push_back(std::move(e));
  }
  // A log that ends before the snapshot (a crash between saving an installed snapshot and
  // resetting the log, or a log cut short by recovery) is history the snapshot covers: the
  // next entry is snapshot.index + 1, which such a WAL could not take.
  if (snap && wal_->last_index() != 0 && wal_->last_index() < base) discard = true;
  if (discard) {
    node_.log_warning("wal does not continue the snapshot at index " + std::to_string(base) +
                   ": discarding the log after it (the leader will send it again)");
    entries.clear();
    if (wal_->last_index() != 0) {
      s = wal_->truncate_suffix(wal_->first_index());
      if (!s) {
        *err = "cannot reset the log: " + s.message();
        return false;
      }
    }
  }
  *fresh = !hs_found && !snap && records.empty();
  st->hard_state = raft::HardState{hs.term, hs.vote, hs.commit};
  st->snapshot = snap;
  st->entries = std::move(entries);
  saved_hs_ = st->hard_state;
  return true;
}

bool RaftTicketLog::write_hard_state(const raft::HardState& hs) {
  storage::HardState out;
  out.term = hs.term;
  out.vote = hs.vote;
  // The file is written before this Ready's entries are durable, so it must not claim a
  // commit index those entries back: a crash in between would make a restart apply stale
  // entries. Term and vote alone are safe to land first; commit is a hint, relearned from
  // the leader (or by a lone voter's first commit) after a restart.
  out.commit = 0;
  out.blob.resize(16);
  std::memcpy(out.blob.data(), &incarnation_, 8);
  std::memcpy(out.blob.data() + 8, &cluster_id_, 8);
  storage::Status s = hs_file_->save(out);
  if (!s) {
    node_.log_warning("hard state save failed: " + s.message());
    return false;
  }
  saved_hs_ = hs;
  return true;
}

bool RaftTicketLog::persist_initial(const raft::InitialState& st, uint64_t after, std::string* err) {
  for (const raft::Entry& e : st.entries) {
    if (e.index <= after) continue;
    wal_->append(static_cast<uint8_t>(e.type), e.term, e.index,
                 std::span<const std::byte>(reinterpret_cast<const std::byte*>(e.data.data()),
                                            e.data.size()));
  }
  storage::Status s = wal_->sync_write(true);
  if (!s) {
    *err = "cannot write the initial log: " + s.message();
    return false;
  }
  if (!write_hard_state(st.hard_state)) {
    *err = "cannot save the initial hard state";
    return false;
  }
  return true;
}

bool RaftTicketLog::force_new_cluster(raft::InitialState* st, std::string* err) {
  const ServerOptions& o = node_.opts();
  raft::Configuration before = raft::latest_configuration(*st);
  uint64_t last = st->entries.empty() ? (st->snapshot ? st->snapshot->index : 0) : st->entries.back().index;
  // The floors are log entries right after the new configuration, so no ticket can be handed
  // out before them: Create (if this node lacks the sequence; else refused as existing, a
  // no-op) then Floor.
  std::vector<std::string> payloads;
  for (const ServerOptions::Floor& f : o.floors) {
    payloads.push_back(tickets::encode(tickets::Command::create(f.name, f.value + 1)));
    payloads.push_back(tickets::encode(tickets::Command::floor(f.name, f.value)));
  }
  ServerContext ctx{raft_addr_, service_addr_, incarnation_};
  std::string why = raft::force_new_cluster(st, o.id, encode_context(ctx), payloads);
  if (!why.empty()) {
    *err = "--force-new-cluster: " + why;
    return false;
  }
  if (!persist_initial(*st, last, err)) {
    *err = "--force-new-cluster: " + *err;
    return false;
  }
  std::string lost;
  for (const raft::Server& sv : before.servers) {
    if (sv.id == o.id) continue;
    lost += (lost.empty() ? "" : ", ") + std::to_string(sv.id);
  }
  std::string floors;
  for (const ServerOptions::Floor& f : o.floors) {
    floors += (floors.empty() ? "" : ", ") + f.name + " > " + std::to_string(f.value);
  }
  node_.log_warning("--force-new-cluster: this node is now the only voter of cluster " + hex(cluster_id_) +
                    ", from its own log up to index " + std::to_string(last) +
                    (lost.empty() ? std::string() : " (members dropped: " + lost + ")") +
                    "; floors: " + (floors.empty() ? "none" : floors) +
                    ". Add members with --join or RAFT.ADDVOTER; remove --force-new-cluster "
                    "before the next start (it would drop them again); never restart a dropped "
                    "member on its old data");
  return true;
}

bool RaftTicketLog::check_own_addresses(std::string* err) {
  const ServerOptions& o = node_.opts();
  std::string rhost, shost;
  uint16_t rport = 0, sport = 0;
  if (!io::parse_host_port(o.raddr, &rhost, &rport)) {
    *err = "bad --raddr '" + o.raddr + "' (want host:port or :port)";
    return false;
  }
  for (const auto& [flag, addr] : {std::pair<const char*, const std::string&>{"--raddr", raft_addr_},
                                   {"--saddr", service_addr_}}) {
    std::string bad = check_server_addr(addr, "address");
    if (!bad.empty()) {
      *err = std::string(flag) + ": " + bad.substr(4);
      return false;
    }
  }
  auto wildcard = [](const std::string& h) { return h.empty() || h == "0.0.0.0" || h == "::"; };
  if (io::parse_host_port(o.saddr, &shost, &sport) && sport == rport &&
      (shost == rhost || wildcard(shost) || wildcard(rhost))) {
    *err = "--raddr " + o.raddr + " and --saddr " + o.saddr + " are the same port: give the " +
           "raft port its own";
    return false;
  }
  // The raft listener binds without SO_REUSEPORT: try that bind now. A node killed a moment
  // ago may leave its listener behind for a few milliseconds, so retry briefly.
  std::string why;
  for (int i = 0; i < 100; ++i) {
    int fd = io::listen_tcp(rhost, rport, false, &why);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    if (fd != -EADDRINUSE) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  *err = "cannot listen on the raft address " + o.raddr + ": " + why;
  return false;
}

bool RaftTicketLog::open(std::string* err) {
  const ServerOptions& o = node_.opts();
  raft_addr_ = advertised(o.raddr);
  // With a TLS client listener, the address others are told (and -MOVED names) is the TLS one.
  service_addr_ = advertised(server::client_address(o));
  // Every address is checked before anything is written: a node that bootstrapped with an
  // address it cannot use would record it in its configuration.
  if (!check_own_addresses(err)) return false;
  raft::InitialState st;
  bool fresh = false;
  if (!load_state(&st, &fresh, err)) return false;
  bool needs_save = false;
  if (incarnation_ == 0) {
    incarnation_ = random_u64();
    needs_save = true;
  }
  bool has_log = st.snapshot.has_value() || !st.entries.empty();
  if (o.force_new_cluster && !has_log) {
    *err = "--force-new-cluster: this node has no log and no snapshot in " + node_.data_dir() +
           ": there is nothing to recover from (start it on the survivor's data directory)";
    return false;
  } else if (o.force_new_cluster) {
    if (!force_new_cluster(&st, err)) return false;
    needs_save = false;
  } else if (!has_log && o.join.empty()) {
    if (fresh && o.no_bootstrap) {
      node_.log_line("--no-bootstrap: waiting to be added by a leader: run RAFT.ADDVOTER " +
                     std::to_string(o.id) + " " + raft_addr_ + " " + service_addr_ +
                     " on the cluster's leader");
    } else if (!fresh) {
      node_.log_line("this node has state but no configuration and no --join: waiting to be "
                     "added by a leader");
    } else {
      // Only a node with no state and no --join founds a cluster.
      cluster_id_ = random_u64();
      ServerContext ctx{raft_addr_, service_addr_, incarnation_};
      st = raft::bootstrap_single(o.id, encode_context(ctx));
      if (!persist_initial(st, 0, err)) return false;
      needs_save = false;
      node_.log_line("bootstrapped a new cluster " + hex(cluster_id_) + " with this node as its "
                     "only voter");
    }
  } else if (has_log && !o.join.empty()) {
    node_.log_line("--join " + o.join + " ignored: this node already has cluster state");
  } else if (!has_log && !o.join.empty()) {
    std::string cmd = "RAFT.JOIN " + std::to_string(o.id) + " " + raft_addr_ + " " +
                      service_addr_ + " " + hex(incarnation_);
    if (o.cluster_secret) {
      cmd += " " + auth::to_hex(join_proof(*o.cluster_secret, std::to_string(o.id), raft_addr_,
                                           service_addr_, hex(incarnation_)));
    }
    join_ = std::make_unique<JoinClient>(advertised(o.join), cmd, o.join_user, o.join_password,
                                         [this](std::string_view m) {
                                           node_.log_line("join: " + std::string(m));
                                         },
                                         o.tls_port != 0 ? node_.tls() : nullptr);
  }
  if (needs_save && !write_hard_state(st.hard_state)) {
    *err = "cannot save hard state";
    return false;
  }
  if (st.snapshot) {
    // From disk: validated, never assumed (it also reads the data of earlier builds).
    std::string bad = tickets_.decode_snapshot(st.snapshot->data, st.snapshot->index);
    if (!bad.empty()) {
      *err = "snapshot " + snapshot_path_ + ": the ticket state does not decode: " + bad;
      return false;
    }
    applied_index_ = snapshot_index_ = st.snapshot->index;
  }
  raft::Config cfg;
  cfg.id = o.id;
  cfg.election_ticks = kElectionTicks;
  cfg.heartbeat_ticks = kHeartbeatTicks;
  cfg.lease_ticks = o.window_lease ? kLeaseTicks : 0;
  // On every node, leases or not: a restarted follower may have answered a lease's round.
  cfg.guard_votes_after_start = true;
  cfg.max_inflight_msgs = 4;
  cfg.max_msg_bytes = 256 * 1024;
  cfg.seed = random_u64();
  // The core refuses an InstallSnapshot whose ticket state we could not restore.
  cfg.valid_snapshot_data = [](std::string_view d) {
    tickets::StateMachine probe;
    return probe.decode_snapshot(d, 1).empty();
  };
  raft_ = std::make_unique<raft::Node>(cfg, std::move(st));
  tick_at_us_[0] = now_us();  // tick number 0: the start
  window_.set_max_rounds_in_flight(kWindowRoundsInFlight);
  pipeline_ = std::make_unique<driver::ReadyPipeline>(*raft_, static_cast<driver::Storage&>(*this),
                                                      static_cast<driver::Application&>(*this));
  pipeline_->set_applied_index(applied_index_);
  LogStats& ls = node_.log_stats();
  ls.counter.store(last_ticket());
  publish_sequence_stats();
  ls.last_index.store(raft_->last_index());
  ls.durable_index.store(raft_->last_index());
  ls.snapshot_index.store(snapshot_index_);
  ls.direct_io.store(wal_->direct_io());
  ls.max_writes_in_flight.store(wal_->max_writes_in_flight());
  return true;
}

void RaftTicketLog::attach(io::Loop* loop) {
  loop_ = loop;
  sync_c_.owner = tick_c_.owner = this;
  for (WriteSlot& w : slots_) {
    w.self = this;
    w.write_c.owner = w.fsync_c.owner = &w;
    w.write_c.fn = [](io::Completion* c, int32_t res, uint32_t) {
      auto* w = static_cast<WriteSlot*>(c->owner);
      w->self->on_write_done(w, res);
    };
    w.fsync_c.fn = [](io::Completion* c, int32_t res, uint32_t) {
      auto* w = static_cast<WriteSlot*>(c->owner);
      w->self->finish_write(w, res < 0 ? res : static_cast<int64_t>(w->op.len));
    };
  }
  sync_c_.fn = [](io::Completion* c, int32_t res, uint32_t) {
    auto* self = static_cast<RaftTicketLog*>(c->owner);
    self->syncing_ = false;
    storage::Status s = self->wal_->end_sync(self->sync_op_, res);
    if (!s) self->stop_on_wal_failure("background fdatasync failed");
    self->node_.log_stats().durable_index.store(self->wal_->durable_index());
    self->pump();
  };
  tick_c_.fn = [](io::Completion* c, int32_t, uint32_t) {
    static_cast<RaftTicketLog*>(c->owner)->on_tick();
  };
  tick_ts_.tv_sec = 0;
  tick_ts_.tv_nsec = kTickNs;
  sync_every_ticks_ = static_cast<uint64_t>(kBackgroundSyncNs / kTickNs);
  loop_->timeout(&tick_ts_, &tick_c_);

  PeerTransport::Options po;
  po.self_id = node_.opts().id;
  po.cluster_id = cluster_id_;
  po.incarnation = incarnation_;
  po.listen_addr = node_.opts().raddr;
  po.service_addr = service_addr_;
  po.raft_addr = raft_addr_;
  po.secret = node_.opts().cluster_secret;
  po.tls = node_.opts().tls_cluster ? node_.tls() : nullptr;
  PeerTransport::Hooks hooks;
  hooks.on_message = [this](raft::Message&& m) {
    TICKETD_TRACE_EV("recv", trace_peer(m, m.from), trace_index(m));
#ifdef TICKETD_TRACE
    if (m.type == raft::MessageType::kHeartbeat || m.type == raft::MessageType::kHeartbeatResp) {
      TICKETD_TRACE_EV("hbrecv", trace_peer(m, m.from), m.hint_index);
    }
#endif
    raft::StepResult r = raft_->step(m);
    if (!r.ok()) note_refusal(m, r);
  };
  hooks.check_hello = [this](const PeerHello& h) -> std::string {
    const raft::Server* s = raft_->configuration().find(h.node_id);
    if (s != nullptr) {
      ServerContext ctx = decode_context(s->context);
      if (ctx.incarnation != 0 && h.incarnation != ctx.incarnation) {
        return "node " + std::to_string(h.node_id) +
               " has a new incarnation (its data directory was wiped?); remove it with "
               "RAFT.REMOVESERVER " + std::to_string(h.node_id) + " and join it again";
      }
    }
    return "";
  };
  hooks.on_hello = [this](const PeerHello& h) { on_peer_hello(h); };
  hooks.log = [this](std::string_view m) { node_.log_line("peer: " + std::string(m)); };
  hooks.on_refused = [this](uint64_t peer, std::string_view reason) { note_refused_by(peer, reason); };
  transport_ = std::make_unique<PeerTransport>(*loop_, kPeerBufGroup, po, hooks);
  std::string err;
  if (!transport_->listen(&err)) {
    // The raft port is part of the node's identity: refuse to run without it.
    node_.log_warning("cannot listen on the raft address " + node_.opts().raddr + ": " + err);
    std::_Exit(1);
  }
  if (!po.secret) {
    node_.log_warning("the raft port " + node_.opts().raddr + " is unauthenticated (no "
                   "--cluster-secret-file): anyone who reaches it can speak Raft to this node");
  } else {
    node_.log_line("peers must prove the cluster secret (--cluster-secret-file)");
  }
  sync_peers();
  // A cluster of one elects itself at once instead of waiting out an election timeout.
  const raft::Configuration& conf = raft_->configuration();
  if (conf.voter_count() == 1 && conf.is_voter(node_.opts().id)) raft_->campaign();
  if (join_) join_->start();
  pump();
  publish();
}

}  // namespace ticketd::cluster
