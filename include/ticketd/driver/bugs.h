// Deliberate driver bugs the simulator must catch, now that it runs the server's own Ready
// pipeline. They exist only in ticketd_driver_buggy (TICKETD_DRIVER_BUGS=1), are all off by
// default, and are never compiled into the server.
#pragma once

#ifdef TICKETD_DRIVER_BUGS

namespace ticketd::driver::testing {

struct Bugs {
  bool release_before_durable = false;   // release a staged Ready without waiting for its write
  bool early_apply_out_of_order = false; // apply early even behind held-back committed entries
};

// Process-global switches (the simulator is single-threaded). Reset to {} after each test.
extern Bugs bugs;

}  // namespace ticketd::driver::testing

#endif
