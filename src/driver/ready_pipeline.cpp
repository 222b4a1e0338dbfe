#include "ticketd/driver/ready_pipeline.h"

#include <utility>

#include "ticketd/driver/bugs.h"

namespace ticketd::driver {

#ifdef TICKETD_DRIVER_BUGS
namespace testing {
Bugs bugs;
}
#define TICKETD_DRIVER_BUG(name) (::ticketd::driver::testing::bugs.name)
#else
#define TICKETD_DRIVER_BUG(name) false
#endif

ReadyPipeline::ReadyPipeline(raft::Node& node, Storage& storage, Application& app, PipelineOptions opt)
    : node_(node), storage_(storage), app_(app), opt_(opt), applied_(node.applied_index()) {}

void ReadyPipeline::pump() {
  // Releasing (on_persisted, applying) can make the node hand out more; so can storage that
  // completes at once (durability low). Bounded: a round that releases nothing ends it, and
  // each release consumes a Ready taken before.
  while (true) {
    take();
    stage_all();
    storage_.start_write();
    if (!release_all()) return;
  }
}

void ReadyPipeline::take() {
  bool applied = false;
  while (node_.has_ready()) {
    Pending p;
    node_.ready(&p.rd);
    for (const raft::Message& m : p.rd.messages) app_.send(m);
    p.rd.messages.clear();
    if (!p.rd.read_states.empty()) {
      app_.read_states(p.rd.read_states);
      p.rd.read_states.clear();
    }
    // Committed entries are durable on a quorum already: apply them now rather than behind
    // the local writes queued ahead of them, unless a snapshot install or a truncation is
    // part of this Ready or still waits in the pipeline (entries apply after the snapshot
    // they follow), or an earlier Ready still holds committed entries (batches apply in order).
    bool blocked = !opt_.early_apply || p.rd.snapshot.has_value() || p.rd.truncate_from != 0;
    for (const Pending& q : pending_) {
      bool held = !q.staged || !q.rd.committed_entries.empty();
      blocked = blocked || (held && !TICKETD_DRIVER_BUG(early_apply_out_of_order));
    }
    if (!blocked && !p.rd.committed_entries.empty()) {
      for (const raft::Entry& e : p.rd.committed_entries) apply(e);
      p.rd.committed_entries.clear();
      applied = true;
    }
    pending_.push_back(std::move(p));
  }
  if (applied) app_.applied_batch();
}

void ReadyPipeline::stage_all() {
  for (Pending& p : pending_) {
    if (p.staged) continue;
    // A snapshot install or a truncation rewrites stored state: only once everything before
    // it is released and storage has nothing in flight or unwritten.
    bool heavy = p.rd.snapshot.has_value() || p.rd.truncate_from != 0;
    if (heavy && (&p != &pending_.front() || !storage_.idle())) return;
    if (p.rd.snapshot && !storage_.may_install_snapshot()) return;
    if (!stage(p)) {
      stuck_ = true;  // retried on the next pump
      return;
    }
    stuck_ = false;
  }
}

bool ReadyPipeline::stage(Pending& p) {
  raft::Ready& rd = p.rd;
  if (rd.hard_state) {
    if (!storage_.save_hard_state(*rd.hard_state)) return false;
    rd.hard_state.reset();  // saved: a retry of what follows need not save it again
  }
  if (rd.snapshot) {
    if (!storage_.install_snapshot(*rd.snapshot)) return false;
    // Safe: this Ready is at the front, so everything before it is applied and released.
    applied_ = rd.snapshot->index;
  }
  if (rd.truncate_from != 0) storage_.truncate_from(rd.truncate_from);
  for (const raft::Entry& e : rd.entries) storage_.append(e);
  rd.entries.clear();
  p.staged = true;
  p.need = storage_.last_index();
  return true;
}

bool ReadyPipeline::release_all() {
  bool released = false;
  while (!pending_.empty() && pending_.front().staged &&
         (pending_.front().need <= storage_.durable_index() ||
          TICKETD_DRIVER_BUG(release_before_durable))) {
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    raft::Ready& rd = p.rd;
    if (rd.durable_mark) node_.on_persisted(rd.durable_mark->index, rd.durable_mark->term);
    for (const raft::Message& m : rd.persist_then_send) app_.send(m);
    for (const raft::Entry& e : rd.committed_entries) apply(e);
    if (!rd.committed_entries.empty()) app_.applied_batch();
    released = true;
  }
  return released;
}

void ReadyPipeline::apply(const raft::Entry& e) {
  if (e.index <= applied_) return;  // covered by a snapshot installed meanwhile
  applied_ = e.index;
  app_.apply(e);
}

}  // namespace ticketd::driver
