// Window mode on the leader (issue 15): which ticket of a window sequence a client gets, and
// when it may be told. Pure and deterministic like the state machine: no sockets, files,
// threads or clocks (the caller passes its time in, for the rate only), so the server and
// the simulator run this same code.
//
//   WindowServer w;
//   w.set_leader(term);                          // on every role or term change (0: not leader)
//   w.submit(id, {{"orders", 3}});               // a batch arrived
//   if (auto ctx = w.round_to_start()) node.read_index(*ctx);   // one round per turn
//   for (const Command& c : w.reservations(sm, now_ms)) { propose; w.proposed(...); }
//   ... w.applied(index, term, cmd, result, sm)  // every committed entry, in log order
//   ... w.round_done(ctx, ok)                    // the ReadState of that round
//   for (WindowRelease& r : w.take_released()) answer(r);
//
// The rules that make window tickets unique and increasing in real time:
//  * Tickets come only from reservations of THIS leader's term that applied here (their
//    Reserve entry committed): never from one in flight, never from an earlier term's.
//    A new term (or a restart: the object is new) starts with no window, so it serves only
//    above the highest committed reservation, from a fresh one of its own.
//  * Tickets are assigned in arrival order (one FIFO for every sequence), so a batch that
//    arrived later gets higher tickets than any earlier one of this leader.
//  * A batch is released only once a ReadIndex round that started after it arrived was
//    confirmed: by then no later leader can have committed a reservation (it needs a quorum
//    that would have refused our round), so no later leader released anything yet.
//    With --lease, a lease that holds at release time stands for that round (lease_confirms).
//  * A Floor that applies trims the windows above its value; a Drop forgets the sequence; an
//    Allocate of a window sequence (claiming above every reservation) ends its windows.
// Losing leadership fails every batch not yet released (the client retries elsewhere); their
// tickets and the rest of the windows are never handed out: gaps, never repeats.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ticketd/tickets/state_machine.h"

namespace ticketd::tickets {

// A reservation lasts at least this long at the recent rate (so proposals stay off the
// critical path), and the next is proposed once this fraction of what is left is used.
inline constexpr uint64_t kWindowTargetMs = 2000;

struct WindowRelease {
  uint64_t id = 0;                // the batch's id, as submitted
  bool ok = false;                // false: leadership lost before release; no ticket is valid
  std::vector<ItemResult> items;  // ok: per item, its status and first ticket (n consecutive)
};

class WindowServer {
 public:
  // This node leads in `term` (0: it does not). A change forgets every window and pending
  // reservation, and fails every batch not yet released.
  void set_leader(uint64_t term);
  uint64_t term() const { return term_; }

  // A batch of window-sequence requests arrived (items: a name and a count each, n >= 1).
  // `sm` is this node's applied state (the sequences' modes and existence).
  void submit(uint64_t id, std::vector<Command::Item> items, const StateMachine& sm);
  // The context of a ReadIndex round to start now, if batches arrived since the last round
  // started (one round serves them all; up to set_max_rounds_in_flight rounds pipeline).
  // The caller passes it to raft::Node::read_index; if that refuses, call
  // round_done(ctx, false).
  std::optional<uint64_t> round_to_start();
  // The round's ReadState: ok confirms every batch that arrived before it started.
  void round_done(uint64_t ctx, bool ok);
  // --lease: the leader's lease holds now (raft::lease_holds), so no later leader exists
  // yet: confirms every batch that arrived so far, as a round started and answered now would.
  void lease_confirms();
  // At most this many rounds in flight (0: no bound). With a bound, batches that arrive while
  // the rounds are out wait for the next one: fewer rounds (each costs every voter a wake-up),
  // a round trip more at worst. Safety does not depend on it.
  void set_max_rounds_in_flight(uint64_t n) { max_rounds_in_flight_ = n; }

  // Reserve commands to propose now (at most one in flight per sequence): for sequences
  // with waiting batches, or whose committed window is half used, sized by the recent rate.
  std::vector<Command> reservations(const StateMachine& sm, uint64_t now_ms);
  // A Reserve from reservations() was proposed at (index, term).
  void proposed(const Command& reserve, uint64_t index, uint64_t term, const StateMachine& sm);
  // Every committed entry this node applies, in log order (after sm applied it).
  void applied(uint64_t index, uint64_t term, const Command& c, const ApplyResult& r,
               const StateMachine& sm);

  // Batches whose tickets are assigned and whose round is confirmed (or that failed).
  std::vector<WindowRelease> take_released();

  // Inspection (INFO, tests).
  size_t waiting() const { return batches_.size(); }
  uint64_t available(std::string_view name) const;
  bool has_pending_reservation(std::string_view name) const;

 private:
  struct Range {
    uint64_t lo, hi;  // inclusive
  };
  struct Seq {
    std::deque<Range> windows;   // committed, of this term, ascending
    uint64_t pending_index = 0;  // a Reserve of ours in flight (0: none)
    uint64_t pending_term = 0;
    uint64_t last_size = 0;      // the size of the last reservation proposed
    uint64_t taken = 0;          // tickets assigned this term (the rate)
    uint64_t rate_taken = 0;     // `taken` when the last reservation was proposed
    uint64_t rate_ms = 0;        // ... and when
    uint64_t unmet = 0;          // tickets the batches waiting for a window ask for
  };
  struct Batch {
    uint64_t id;
    std::vector<Command::Item> items;
    uint64_t round;  // the round that confirms it (started after it arrived)
    bool assigned = false;
    std::vector<ItemResult> results;
  };
  void assign(const StateMachine& sm);
  bool try_assign(Batch& b, const StateMachine& sm);
  void release();
  void fail_all();
  static void add_window(Seq& q, uint64_t lo, uint64_t hi);

  uint64_t term_ = 0;
  std::map<std::string, Seq, std::less<>> seqs_;
  std::deque<Batch> batches_;          // arrival order
  uint64_t next_round_ = 1;            // the ctx of the next round to start
  uint64_t confirmed_round_ = 0;       // every round <= this is confirmed
  uint64_t min_round_ = 1;             // rounds below this belong to an earlier term
  bool round_wanted_ = false;
  uint64_t rounds_in_flight_ = 0;      // started in this term, not yet done
  uint64_t max_rounds_in_flight_ = 0;
  std::vector<WindowRelease> released_;
};

}  // namespace ticketd::tickets
