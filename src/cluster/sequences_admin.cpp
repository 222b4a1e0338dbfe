// The sequence commands that run on shard 0 (issue 11): TICKET.CREATE, DROP and FLOOR are
// log entries, answered once their entry is applied (same index and term), from how it
// applied; TICKET.LIST and TICKET.INFO answer from the leader's applied state. The shard has
// checked every argument already (src/server/sequence_commands.cpp); what arrives here is
// parsed again, and anything odd is refused, never asserted.
#include "raft_ticket_log.h"

#include "ticketd/resp/parser.h"
#include "ticketd/resp/writer.h"

namespace ticketd::cluster {

namespace {

std::string no_such_sequence(std::string_view name) {
  return "ERR no such sequence '" + std::string(name) + "'";
}

}  // namespace

bool RaftTicketLog::is_sequence_command(std::string_view cmd) {
  for (const char* name : {"TICKET.CREATE", "TICKET.DROP", "TICKET.FLOOR", "TICKET.LIST",
                           "TICKET.INFO", "TICKET.LAST"}) {
    if (resp::iequals(cmd, name)) return true;
  }
  return false;
}

void RaftTicketLog::publish_sequence_stats() {
  LogStats& ls = node_.log_stats();
  ls.counter.store(last_ticket(), std::memory_order_relaxed);
  ls.sequences.store(tickets_.size(), std::memory_order_relaxed);
}

void RaftTicketLog::admin_sequence(AdminRequest&& req) {
  const std::vector<std::string>& a = req.args;
  auto is = [&](const char* name) { return resp::iequals(a[0], name); };
  // Followers redirect, as for TICKET: the leader's state is the one clients act on.
  if (redirect_if_follower(req)) return;
  std::string out;
  if (is("TICKET.LIST") && a.size() == 1) {
    // From applied state (not a linearizable read: a sequence created a moment ago by a
    // previous leader may not be applied here yet).
    resp::append_array_header(out, tickets_.size());
    for (const auto& [name, seq] : tickets_.sequences()) resp::append_bulk(out, name);
    reply(req, std::move(out));
    return;
  }
  if (is("TICKET.LAST")) {
    admin_last(std::move(req));
    return;
  }
  if (a.size() < 2 || !tickets::check_name(a[1]).empty()) {
    reply_error(req, "ERR bad sequence command");
    return;
  }
  const std::string& name = a[1];
  if (is("TICKET.INFO") && a.size() == 2) {
    const tickets::Sequence* seq = tickets_.find(name);
    if (seq == nullptr) {
      reply_error(req, no_such_sequence(name));
      return;
    }
    // Window mode: `last` is the highest ticket claimed (reserved); `reserved` the highest
    // committed reservation, above which a new leader (or a restart) starts, so a leader
    // change or crash skips at most a window's rest: gaps, never a repeat.
    resp::append_array_header(out, 14);
    resp::append_bulk(out, "name");
    resp::append_bulk(out, name);
    resp::append_bulk(out, "last");
    resp::append_integer_u64(out, seq->last);
    resp::append_bulk(out, "issued");
    resp::append_integer_u64(out, seq->issued);
    resp::append_bulk(out, "created_index");
    resp::append_integer_u64(out, seq->created_index);
    resp::append_bulk(out, "mode");
    resp::append_bulk(out, tickets::to_string(seq->mode));
    resp::append_bulk(out, "window");
    resp::append_integer_u64(out, seq->window);
    resp::append_bulk(out, "reserved");
    resp::append_integer_u64(out, seq->reserved);
    reply(req, std::move(out));
    return;
  }
  uint64_t value = 0;
  if (is("TICKET.CREATE") && a.size() >= 2 && a.size() % 2 == 0) {
    value = 1;
    bool window_mode = false, window_seen = false;
    uint64_t window = tickets::kDefaultWindow;
    for (size_t i = 2; i + 1 < a.size(); i += 2) {
      bool ok = true;
      if (resp::iequals(a[i], "START")) {
        ok = parse_u64(a[i + 1], &value) && value != 0 && value <= static_cast<uint64_t>(INT64_MAX);
      } else if (resp::iequals(a[i], "MODE")) {
        window_mode = resp::iequals(a[i + 1], "window");
        ok = window_mode || resp::iequals(a[i + 1], "dense");
      } else if (resp::iequals(a[i], "WINDOW")) {
        window_seen = true;
        ok = parse_u64(a[i + 1], &window) && window != 0 && window <= tickets::kMaxWindow;
      } else {
        ok = false;
      }
      if (!ok) {
        reply_error(req, "ERR syntax error");
        return;
      }
    }
    if (window_seen && !window_mode) {
      reply_error(req, "ERR WINDOW needs MODE window");
      return;
    }
    // The limit is a flag, so it is checked here, never in apply (nodes may differ in it).
    // Creates still in flight count: two racing creates cannot both take the last place.
    size_t pending = 0;
    for (const AdminWaiter& w : admin_waiters_) {
      pending += w.command && w.command->kind == tickets::Command::Kind::kCreate ? 1 : 0;
    }
    uint64_t limit = node_.opts().max_sequences;
    if (tickets_.find(name) == nullptr && tickets_.size() + pending >= limit) {
      reply_error(req, "ERR too many sequences (the limit is " + std::to_string(limit) +
                           ", --max-sequences)");
      return;
    }
    propose_sequence_command(std::move(req), window_mode
                                                 ? tickets::Command::create_window(name, value, window)
                                                 : tickets::Command::create(name, value));
  } else if (is("TICKET.DROP") && a.size() == 2) {
    propose_sequence_command(std::move(req), tickets::Command::drop(name));
  } else if (is("TICKET.FLOOR") && a.size() == 3) {
    if (!parse_u64(a[2], &value) || value > static_cast<uint64_t>(INT64_MAX)) {
      reply_error(req, "ERR value is not an integer or out of range");
      return;
    }
    propose_sequence_command(std::move(req), tickets::Command::floor(name, value));
  } else {
    reply_error(req, "ERR bad sequence command");
  }
}

void RaftTicketLog::propose_sequence_command(AdminRequest&& req, tickets::Command cmd) {
  if (wal_stalled_) {
    reply_error(req, server::batch_status_error(BatchStatus::kLogFailed));
    return;
  }
  raft::ProposeResult r = raft_->propose(tickets::encode(cmd));
  switch (r.status) {
    case raft::ProposeStatus::kOk:
      admin_waiters_.push_back(AdminWaiter{r.index, r.term, std::move(req), "", now_ms(), 0,
                                           std::move(cmd)});
      return;
    case raft::ProposeStatus::kTransferInProgress:
      reply_error(req, "ERR leadership transfer in progress; try again");
      return;
    case raft::ProposeStatus::kNotLeader:
      redirect_if_follower(req);
      return;
    default:
      reply_error(req, std::string("ERR cannot propose: ") + raft::to_string(r.status));
      return;
  }
}

std::string RaftTicketLog::sequence_reply(const tickets::Command& cmd,
                                          const tickets::ApplyResult* r) {
  std::string out;
  if (r == nullptr) {
    resp::append_error(out, "ERR the entry did not apply");  // our own entry: never here
    return out;
  }
  switch (r->status) {
    case tickets::Status::kOk:
      if (cmd.kind == tickets::Command::Kind::kFloor) {
        resp::append_integer_u64(out, r->last);  // the sequence's last value after it
      } else {
        resp::append_simple(out, "OK");
      }
      break;
    case tickets::Status::kNoSuchSequence:
      resp::append_error(out, no_such_sequence(cmd.name));
      break;
    case tickets::Status::kExists:
      resp::append_error(out, "ERR sequence '" + cmd.name + "' already exists");
      break;
    case tickets::Status::kExhausted:
      resp::append_error(out, "ERR sequence '" + cmd.name + "' exhausted");
      break;
    case tickets::Status::kInvalid:
      resp::append_error(out, cmd.kind == tickets::Command::Kind::kDrop
                                  ? "ERR the default sequence cannot be dropped"
                                  : "ERR invalid sequence command");
      break;
  }
  return out;
}

}  // namespace ticketd::cluster
