// raft-sim: runs the deterministic Raft simulator over any number of seeds (long runs, and
// bit-for-bit replay of a failing seed with --trace). Exits 1 on the first violation.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "simulator.h"
#include "ticketd/driver/bugs.h"
#include "ticketd/raft/bugs.h"
#include "ticketd/tickets/bugs.h"

int main(int argc, char** argv) {
  CLI::App app{"raft-sim: deterministic simulation of ticketd's Raft core under faults"};
  uint64_t seeds = 100, start_seed = 1;
  int steps = 5000, nodes = 3, liveness = 600;
  bool trace = false, verbose = false, keep_going = false, turbulent = false, no_crashes = false, no_partitions = false, no_membership = false,
       no_snapshots = false, force = false, no_floors = false;
  std::string bug, lease = "auto";
  app.add_option("--seeds", seeds, "number of seeds to run")->check(CLI::PositiveNumber);
  app.add_option("--start-seed", start_seed, "first seed");
  app.add_option("--steps", steps, "steps (ticks) per seed")->check(CLI::PositiveNumber);
  app.add_option("--nodes", nodes, "initial voters")->check(CLI::IsMember({1, 3, 5, 7}));
  app.add_option("--liveness-ticks", liveness, "bound for recovery after the final heal");
  app.add_flag("--trace", trace, "print every simulated event to stderr");
  app.add_flag("-v,--verbose", verbose, "print one summary line per seed");
  app.add_flag("--keep-going", keep_going, "do not stop at the first failing seed; count failures");
  app.add_flag("--turbulent", turbulent, "give every seed the harshest fault profile");
  app.add_flag("--no-crashes", no_crashes, "disable crashes");
  app.add_flag("--no-partitions", no_partitions, "disable partitions");
  app.add_flag("--no-membership", no_membership, "disable membership changes");
  app.add_flag("--no-snapshots", no_snapshots, "disable snapshots");
  app.add_flag("--force-new-cluster", force, "lose all nodes but one for good mid-run, recover it with "
                                             "force_new_cluster and floors, add members back");
  app.add_option("--lease", lease, "window batches released under a leader lease: on, off, or auto (by seed)")
      ->check(CLI::IsMember({"on", "off", "auto"}));
  app.add_flag("--no-floors", no_floors, "with --force-new-cluster: give the rewrite no floors (shows why they exist)");
  app.add_option("--bug", bug, "switch on one deliberate bug (test build): commit-old-term, forget-vote, "
                               "no-log-check, ack-before-persist, read-without-quorum, force-drops-uncommitted, allocate-ignores-floor, "
                               "snapshot-forgets-floors, release-before-durable, "
                               "early-apply-out-of-order, window-skips-confirmation, "
                               "window-keeps-old-windows, window-serves-uncommitted, "
                               "durable-past-hole, lease-outlives-election");
  CLI11_PARSE(app, argc, argv);

#ifdef TICKETD_RAFT_BUGS
  auto& b = ticketd::raft::testing::bugs;
  if (bug == "commit-old-term") b.commit_old_term_by_counting = true;
  else if (bug == "forget-vote") b.forget_to_persist_vote = true;
  else if (bug == "no-log-check") b.vote_without_log_check = true;
  else if (bug == "ack-before-persist") b.ack_before_persist = true;
  else if (bug == "read-without-quorum") b.read_without_quorum = true;
  else if (bug == "force-drops-uncommitted") b.force_drops_uncommitted = true;
  else if (bug == "lease-outlives-election") b.lease_outlives_election = true;
  else if (bug == "allocate-ignores-floor") ticketd::tickets::testing::bugs.allocate_ignores_floor = true;
  else if (bug == "snapshot-forgets-floors") ticketd::tickets::testing::bugs.snapshot_forgets_floors = true;
  else if (bug == "window-skips-confirmation") ticketd::tickets::testing::bugs.window_skips_confirmation = true;
  else if (bug == "window-keeps-old-windows") ticketd::tickets::testing::bugs.window_keeps_old_windows = true;
  else if (bug == "window-serves-uncommitted") ticketd::tickets::testing::bugs.window_serves_uncommitted = true;
  else if (bug == "release-before-durable") ticketd::driver::testing::bugs.release_before_durable = true;
  else if (bug == "early-apply-out-of-order") ticketd::driver::testing::bugs.early_apply_out_of_order = true;
  else if (bug == "durable-past-hole") ticketd::sim::testing::disk_bugs.durable_past_hole = true;
  else if (!bug.empty()) {
    std::fprintf(stderr, "raft-sim: unknown --bug '%s'\n", bug.c_str());
    return 2;
  }
#else
  if (!bug.empty()) {
    std::fprintf(stderr, "raft-sim: built without TICKETD_RAFT_BUGS; --bug is unavailable\n");
    return 2;
  }
#endif

  auto t0 = std::chrono::steady_clock::now();
  uint64_t acked = 0, tickets = 0, failed = 0;
  for (uint64_t i = 0; i < seeds; ++i) {
    ticketd::sim::SimOptions opt;
    opt.seed = start_seed + i;
    opt.nodes = nodes;
    opt.steps = steps;
    opt.liveness_ticks = liveness;
    opt.trace = trace;
    opt.always_turbulent = turbulent;
    opt.crashes = !no_crashes;
    opt.partitions = !no_partitions;
    opt.membership = !no_membership;
    opt.snapshots = !no_snapshots;
    opt.force_new_cluster = force;
    opt.force_floors = !no_floors;
    opt.lease = lease == "on" ? 1 : lease == "off" ? 0 : -1;
    ticketd::sim::SimResult r = ticketd::sim::run_simulation(opt);
    acked += r.stats.acked;
    tickets += r.stats.tickets;
    if (verbose || !r.ok) std::printf("%s\n", r.summary().c_str());
    if (!r.ok) {
      ++failed;
      if (!keep_going) return 1;
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (failed) {
    std::printf("raft-sim: %llu of %llu seeds FAILED in %.1fs\n", static_cast<unsigned long long>(failed),
                static_cast<unsigned long long>(seeds), secs);
    return 1;
  }
  std::printf("raft-sim: %llu seeds x %d steps, %d nodes: all invariants held (%llu acks, %llu tickets) in %.1fs\n",
              static_cast<unsigned long long>(seeds), steps, nodes, static_cast<unsigned long long>(acked),
              static_cast<unsigned long long>(tickets), secs);
  return 0;
}
