// Deterministic Raft simulator (VOPR style): many raft::Node in one process, one seed, a faulty
// simulated network and disk, crashes and restarts, membership changes, snapshots, and
// invariant checks after every step. It promises bit-for-bit replay of any seed; it never
// reads a clock, spawns a thread or touches a file.
#pragma once

#include <cstdint>
#include <string>

namespace ticketd::sim {

struct SimOptions {
  uint64_t seed = 1;
  int nodes = 3;            // initial voters: 1, 3, 5 or 7
  int steps = 5000;         // one step = one tick of simulated time, with its deliveries
  int max_nodes = 7;        // cap on servers in the configuration (membership changes)
  bool crashes = true;
  bool partitions = true;
  bool membership = true;
  bool snapshots = true;
  int liveness_ticks = 600; // after the final heal: leader + one committed proposal within this
  bool trace = false;       // print every event to stderr (for replaying a failing seed)
  bool always_turbulent = false;  // every seed gets the harshest fault profile
  // Recovery from a lost majority: at a random step in the first half, every node but one is
  // lost for good (with what it acknowledged); the survivor restarts from its own disk through
  // raft::force_new_cluster with the floors an operator would give (every ticket acknowledged
  // by another node or not on the survivor's disk), and new members are added back. The ticket
  // checks span the whole run; Raft's own (log matching, one leader per term, committed
  // entries) start again at the rewrite, which makes a new history by design.
  bool force_new_cluster = false;
  bool force_floors = true;  // false: the rewrite gets no floors (the check must see repeats)
  // Window batches released under a leader lease (the server's --lease) instead of a quorum
  // round each: -1 by seed (half of them), 0 never, 1 always.
  int lease = -1;
};

struct SimStats {
  uint64_t messages_sent = 0;
  uint64_t messages_dropped = 0;
  uint64_t proposals = 0;
  uint64_t acked = 0;
  uint64_t reads = 0;           // TICKET.LAST reads accepted by a leader
  uint64_t reads_answered = 0;  // ... answered with a value (the rest failed: leadership lost)
  uint64_t tickets = 0;
  uint64_t window_batches = 0;   // window-mode batches submitted to a node that believed it led
  uint64_t window_released = 0;  // ... answered with tickets (the rest failed: leadership lost)
  uint64_t window_tickets = 0;
  uint64_t reservations = 0;     // Reserve entries proposed
  uint64_t lease_releases = 0;   // window releases confirmed by a lease (no round)
  uint64_t elections = 0;  // distinct (term, leader) pairs seen
  uint64_t crashes = 0;
  uint64_t partitions = 0;
  uint64_t conf_changes = 0;
  uint64_t snapshots_taken = 0;
  uint64_t snapshots_installed = 0;
  uint64_t max_commit = 0;
  uint64_t liveness_ticks_used = 0;
  uint64_t removed_aware = 0;  // removed servers that knew it (removal_notice) when stopped
  uint64_t forced = 0;         // force_new_cluster rewrites
  uint64_t floors = 0;         // sequences given a floor by the rewrite
  uint64_t acked_after_force = 0;  // client requests acknowledged after the rewrite
};

struct SimResult {
  bool ok = true;
  uint64_t seed = 0;
  int nodes = 0;
  int steps = 0;
  std::string replay_flags;  // extra raft-sim flags needed to replay (e.g. --turbulent)
  int step = -1;            // step of the first violation (-1: none)
  std::string failure;      // what was violated
  SimStats stats;

  std::string summary() const;  // one line, includes the replay command on failure
};

SimResult run_simulation(const SimOptions& opt);

namespace testing {
// Deliberate bugs of the simulated disk (SimTeeth): the server's WAL has unit tests of its own
// for the same rule (tests/storage/wal_inflight_test.cpp). All off by default.
struct DiskBugs {
  bool durable_past_hole = false;  // a completed write counts durable though an earlier one is not
};
extern DiskBugs disk_bugs;  // process-global (the simulator is single-threaded); reset after use
}  // namespace testing

}  // namespace ticketd::sim
