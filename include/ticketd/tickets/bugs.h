// Deliberate ticket state machine bugs that the simulator must catch (its "teeth"). They exist
// only in the ticketd_tickets_buggy library (TICKETD_TICKETS_BUGS=1), are all off by default,
// and must never be compiled into the server.
#pragma once

#ifdef TICKETD_TICKETS_BUGS

namespace ticketd::tickets::testing {

struct Bugs {
  bool allocate_ignores_floor = false;    // a range starts after the tickets issued, not after last
  bool snapshot_forgets_floors = false;   // a snapshot records last = issued (START/FLOOR lost)
  // Window mode (tickets/window.h):
  bool window_skips_confirmation = false;  // a batch is released without its ReadIndex round
  bool window_keeps_old_windows = false;   // a new term keeps the windows of an earlier one
  bool window_serves_uncommitted = false;  // a reservation serves once proposed, not committed
};

// Process-global switches (the simulator is single-threaded). Reset to {} after each test.
extern Bugs bugs;

}  // namespace ticketd::tickets::testing

#endif
