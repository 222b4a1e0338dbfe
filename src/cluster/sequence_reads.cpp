// TICKET.LAST [name]: the last ticket of a sequence, read linearizably without a log entry
// (ReadIndex, Raft dissertation §6.4, in raft::Node::read_index). The leader asks the core
// for a read; the core releases it (Ready::read_states) once a heartbeat round that started
// after the read arrived was answered by a quorum, with the commit index at its arrival (or
// at the first commit of its term, for a new leader); the driver calls read_done once that
// index is applied, so the answer reflects every ticket that completed before the read was
// sent. A read the core fails (this node stopped
// leading), or that is not released within kProposalTimeoutMs (a leader that hears no
// quorum), answers -CLUSTERDOWN: never a value that could be stale.
#include "raft_ticket_log.h"

#include "../server/trace.h"
#include "ticketd/resp/writer.h"

namespace ticketd::cluster {

namespace {
constexpr std::string_view kReadFailed =
    "CLUSTERDOWN leadership lost before the read was confirmed; try again";
}  // namespace

void RaftTicketLog::admin_last(AdminRequest&& req) {
  // The caller redirected followers. The shard checked the name.
  std::string name =
      req.args.size() == 2 ? req.args[1] : std::string(tickets::kDefaultSequence);
  if (req.args.size() > 2 || !tickets::check_name(name).empty()) {
    reply_error(req, "ERR bad sequence command");
    return;
  }
  uint64_t ctx = next_read_ctx_++;
  raft::ReadIndexResult r = raft_->read_index(ctx);
  switch (r.status) {
    case raft::ReadIndexStatus::kOk:
      reads_.emplace(ctx, PendingRead{std::move(req), std::move(name), now_ms()});
      return;
    case raft::ReadIndexStatus::kTooManyReads:
      reply_error(req, "ERR too many reads in flight; try again");
      return;
    case raft::ReadIndexStatus::kNotLeader:
      redirect_if_follower(req);
      return;
  }
}

void RaftTicketLog::read_done(const raft::ReadState& rs) {
  if (rs.ctx & kWindowRoundCtx) {
    TICKETD_TRACE_EV("wread", rs.ctx & ~kWindowRoundCtx, rs.ok);  // tools/latency-trace
    window_.round_done(rs.ctx & ~kWindowRoundCtx, rs.ok);  // window mode's round
    window_released();
    return;
  }
  auto it = reads_.find(rs.ctx);
  if (it == reads_.end()) return;  // expired meanwhile (answered already)
  PendingRead& r = it->second;
  std::string out;
  if (!rs.ok) {
    resp::append_error(out, kReadFailed);
  } else if (const tickets::Sequence* seq = tickets_.find(r.name)) {
    // Confirmed, and everything up to its index is applied: the state reflects every ticket
    // that completed before the read was sent.
    resp::append_integer_u64(out, seq->last);
  } else {
    resp::append_error(out, "ERR no such sequence '" + r.name + "'");
  }
  reply(r.req, std::move(out));
  reads_.erase(it);
}

void RaftTicketLog::expire_reads() {
  uint64_t now = now_ms();
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.created_ms + kProposalTimeoutMs < now) {
      reply_error(it->second.req, kReadFailed);
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace ticketd::cluster
