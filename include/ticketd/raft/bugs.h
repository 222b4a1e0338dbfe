// Deliberate Raft bugs that the simulator must catch (its "teeth"). They exist only in the
// ticketd_raft_buggy library (TICKETD_RAFT_BUGS=1), are all off by default, and must never be
// compiled into the server.
#pragma once

#ifdef TICKETD_RAFT_BUGS

namespace ticketd::raft::testing {

struct Bugs {
  bool commit_old_term_by_counting = false;  // drop the Raft §5.4.2 current-term check
  bool forget_to_persist_vote = false;       // hand out HardState with vote = 0
  bool vote_without_log_check = false;       // grant (pre)votes without the up-to-date check
  bool ack_before_persist = false;           // append responses leave before the write is durable
  bool read_without_quorum = false;          // read_index releases at once with the commit index
                                             // (no heartbeat round, no wait for the term's commit)
  bool force_drops_uncommitted = false;      // force_new_cluster drops the log after the stored
                                             // commit hint (as etcd drops uncommitted entries)
  bool lease_outlives_election = false;      // the lease runs four election timeouts
};

// Process-global switches (the simulator is single-threaded). Reset to {} after each test.
extern Bugs bugs;

}  // namespace ticketd::raft::testing

#endif
