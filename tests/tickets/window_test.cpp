#include "ticketd/tickets/window.h"

#include <gtest/gtest.h>

namespace ticketd::tickets {
namespace {

// A leader's state machine and window server, with a log that commits what it is told.
struct Leader {
  StateMachine sm;
  WindowServer w;
  uint64_t index = 0;
  uint64_t term = 1;

  Leader() {
    apply(Command::create_window("w", 1, 10));
    w.set_leader(term);
  }
  ApplyResult apply(const Command& c, uint64_t entry_term = 0) {
    ++index;
    ApplyResult r = sm.apply(index, c);
    w.applied(index, entry_term ? entry_term : term, c, r, sm);
    return r;
  }
  // Proposes what the window server asks and commits it at once.
  void reserve_and_commit(uint64_t now = 1) {
    for (const Command& c : w.reservations(sm, now)) {
      w.proposed(c, index + 1, term, sm);
      apply(c);
    }
  }
  void confirm() {
    if (auto r = w.round_to_start()) w.round_done(*r, true);
  }
};

TEST(Window, NothingBeforeTheReservationCommitsNorBeforeConfirmation) {
  Leader l;
  l.w.submit(1, {{"w", 3}}, l.sm);
  auto round = l.w.round_to_start();
  ASSERT_TRUE(round.has_value());
  std::vector<Command> want = l.w.reservations(l.sm, 1);
  ASSERT_EQ(want.size(), 1u);
  EXPECT_EQ(want[0].kind, Command::Kind::kReserve);
  EXPECT_EQ(want[0].value, 10u) << "at least the sequence's window";
  l.w.proposed(want[0], l.index + 1, l.term, l.sm);
  l.w.round_done(*round, true);
  EXPECT_TRUE(l.w.take_released().empty()) << "the reservation has not committed";
  EXPECT_TRUE(l.w.reservations(l.sm, 2).empty()) << "one reservation in flight per sequence";
  l.apply(want[0]);
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].ok);
  EXPECT_EQ(out[0].items[0].first, 1u);
  // The next batch is assigned at once (from memory) but waits for a round after it arrived.
  l.w.submit(2, {{"w", 2}}, l.sm);
  EXPECT_TRUE(l.w.take_released().empty());
  l.confirm();
  out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].items[0].first, 4u);
}

TEST(Window, ARoundThatStartedBeforeTheBatchDoesNotConfirmIt) {
  Leader l;
  l.w.submit(1, {{"w", 1}}, l.sm);
  l.reserve_and_commit();
  auto r1 = l.w.round_to_start();
  l.w.submit(2, {{"w", 1}}, l.sm);
  l.w.round_done(*r1, true);
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u) << "only the batch that arrived before round 1 started";
  EXPECT_EQ(out[0].id, 1u);
  auto r2 = l.w.round_to_start();
  ASSERT_TRUE(r2.has_value());
  l.w.round_done(*r2, true);
  ASSERT_EQ(l.w.take_released().size(), 1u);
}

// --lease: a lease that holds stands for a round started and answered now: it confirms the
// batches that arrived so far, not later ones, and a round already in flight that answers
// afterwards changes nothing.
TEST(Window, ALeaseConfirmsWhatArrivedSoFar) {
  Leader l;
  l.w.submit(1, {{"w", 2}}, l.sm);
  l.reserve_and_commit();
  auto inflight = l.w.round_to_start();
  ASSERT_TRUE(inflight.has_value());
  l.w.submit(2, {{"w", 1}}, l.sm);
  EXPECT_TRUE(l.w.take_released().empty());
  l.w.lease_confirms();
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].items[0].first, 1u);
  EXPECT_EQ(out[1].items[0].first, 3u);
  EXPECT_FALSE(l.w.round_to_start().has_value()) << "no round wanted for what the lease released";
  l.w.submit(3, {{"w", 1}}, l.sm);
  l.w.round_done(*inflight, true);  // started before batch 3 arrived: does not confirm it
  EXPECT_TRUE(l.w.take_released().empty());
  l.w.lease_confirms();
  out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].items[0].first, 4u);
  // Not leading: nothing to confirm, nothing released.
  l.w.set_leader(0);
  l.w.lease_confirms();
  for (const WindowRelease& r : l.w.take_released()) EXPECT_FALSE(r.ok);
}

// A bound on rounds in flight: batches that arrive while the round is out share the next one,
// which starts once it is done (or failed); a new term starts with none out.
TEST(Window, AtMostTheBoundOfRoundsInFlight) {
  Leader l;
  l.w.set_max_rounds_in_flight(1);
  l.w.submit(1, {{"w", 1}}, l.sm);
  l.reserve_and_commit();
  auto r1 = l.w.round_to_start();
  ASSERT_TRUE(r1.has_value());
  l.w.submit(2, {{"w", 1}}, l.sm);
  l.w.submit(3, {{"w", 1}}, l.sm);
  EXPECT_FALSE(l.w.round_to_start().has_value()) << "one round out already";
  l.w.round_done(*r1, true);
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, 1u);
  auto r2 = l.w.round_to_start();
  ASSERT_TRUE(r2.has_value()) << "the waiting batches get the next round";
  l.w.round_done(*r2, false);  // a failed round frees its slot too
  for (const WindowRelease& r : l.w.take_released()) EXPECT_FALSE(r.ok);
  l.w.submit(4, {{"w", 1}}, l.sm);
  auto r3 = l.w.round_to_start();
  ASSERT_TRUE(r3.has_value());
  l.w.set_leader(2);  // a new term: the old round no longer counts
  l.w.submit(5, {{"w", 1}}, l.sm);
  EXPECT_TRUE(l.w.round_to_start().has_value());
  l.w.round_done(*r3, true);  // the earlier term's: ignored
}

TEST(Window, ANewTermServesOnlyFromItsOwnReservation) {
  Leader l;
  l.w.submit(1, {{"w", 1}}, l.sm);
  l.reserve_and_commit();
  l.confirm();
  ASSERT_EQ(l.w.take_released().size(), 1u);
  EXPECT_EQ(l.w.available("w"), 9u);
  // Deposed and elected again: the rest of the old window is a gap.
  l.w.set_leader(0);
  l.term = 3;
  l.w.set_leader(3);
  EXPECT_EQ(l.w.available("w"), 0u);
  l.w.submit(2, {{"w", 1}}, l.sm);
  l.reserve_and_commit();
  l.confirm();
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].items[0].first, 11u) << "above the highest committed reservation";
}

TEST(Window, AReserveOfAnotherTermOrIndexIsNotOurs) {
  Leader l;
  l.w.submit(1, {{"w", 1}}, l.sm);
  std::vector<Command> want = l.w.reservations(l.sm, 1);
  ASSERT_EQ(want.size(), 1u);
  l.w.proposed(want[0], l.index + 1, l.term, l.sm);
  // Another leader's entry took that index (same command, older term): not ours.
  l.apply(want[0], /*entry_term=*/0 + 7);
  l.confirm();
  EXPECT_TRUE(l.w.take_released().empty());
  EXPECT_EQ(l.w.available("w"), 0u);
  EXPECT_FALSE(l.w.has_pending_reservation("w"));
  l.reserve_and_commit();  // asks again
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].items[0].first, 11u);
}

TEST(Window, LosingLeadershipFailsWhatIsNotReleased) {
  Leader l;
  l.w.submit(1, {{"w", 1}}, l.sm);
  l.reserve_and_commit();
  auto r = l.w.round_to_start();
  l.w.set_leader(0);
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].ok);
  l.w.round_done(*r, true);  // a late confirmation of the old term releases nothing
  EXPECT_TRUE(l.w.take_released().empty());
  l.w.submit(2, {{"w", 1}}, l.sm);  // not leading: refused at once
  out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].ok);
}

TEST(Window, AFailedRoundFailsTheWaitingBatches) {
  Leader l;
  l.w.submit(1, {{"w", 1}}, l.sm);
  l.reserve_and_commit();
  l.w.round_done(*l.w.round_to_start(), false);
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].ok);
}

TEST(Window, FloorTrimsAndDropForgets) {
  Leader l;
  l.w.submit(1, {{"w", 1}}, l.sm);
  l.reserve_and_commit();
  l.confirm();
  l.w.take_released();
  l.apply(Command::floor("w", 5));
  EXPECT_EQ(l.w.available("w"), 5u) << "6..10 left";
  l.w.submit(2, {{"w", 1}}, l.sm);
  l.confirm();
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].items[0].first, 6u);
  l.apply(Command::drop("w"));
  EXPECT_EQ(l.w.available("w"), 0u);
  l.w.submit(3, {{"w", 1}, {"default", 1}}, l.sm);
  l.confirm();
  out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].items[0].status, Status::kNoSuchSequence);
  EXPECT_EQ(out[0].items[1].status, Status::kInvalid) << "default is dense here";
}

TEST(Window, AnAllocateOfAWindowSequenceEndsItsWindows) {
  Leader l;
  l.w.submit(1, {{"w", 1}}, l.sm);
  l.reserve_and_commit();
  l.confirm();
  l.w.take_released();
  ApplyResult r = l.apply(Command::allocate({{"w", 1}}));
  EXPECT_EQ(r.items[0].first, 11u);
  EXPECT_EQ(l.w.available("w"), 0u) << "2..10 would be below ticket 11, already answered";
  l.w.submit(2, {{"w", 1}}, l.sm);
  l.reserve_and_commit();
  l.confirm();
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].items[0].first, 12u);
}

TEST(Window, ArrivalOrderAcrossSequencesAndBlocksLargerThanTheWindow) {
  Leader l;
  l.apply(Command::create_window("v", 100, 4));
  l.w.submit(1, {{"w", 25}}, l.sm);  // more than the window: the reservation covers it
  l.w.submit(2, {{"v", 1}}, l.sm);   // waits behind batch 1 (one FIFO)
  l.w.submit(3, {{"v", 6}}, l.sm);
  std::vector<Command> want = l.w.reservations(l.sm, 1);
  ASSERT_EQ(want.size(), 2u) << "every waiting batch's sequence";
  EXPECT_EQ(want[1].name, "w");
  EXPECT_EQ(want[1].value, 25u) << "sized for what waits";
  EXPECT_EQ(want[0].name, "v");
  EXPECT_EQ(want[0].value, 99u + 7) << "both waiting v batches in one reservation";
  // v's reservation commits first: batch 2 still waits behind batch 1.
  l.w.proposed(want[0], l.index + 1, l.term, l.sm);
  l.apply(want[0]);
  l.confirm();
  EXPECT_TRUE(l.w.take_released().empty()) << "arrival order";
  l.w.proposed(want[1], l.index + 1, l.term, l.sm);
  l.apply(want[1]);
  std::vector<WindowRelease> out = l.w.take_released();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].id, 1u);
  EXPECT_EQ(out[0].items[0].first, 1u);
  EXPECT_EQ(out[1].items[0].first, 100u);
  EXPECT_EQ(out[2].items[0].first, 101u);
}

TEST(Window, TheNextReservationIsProposedAheadAndSizedByTheRate) {
  Leader l;
  l.w.submit(1, {{"w", 1}}, l.sm);
  l.reserve_and_commit(1000);
  EXPECT_TRUE(l.w.reservations(l.sm, 1001).empty()) << "9 of 10 left";
  l.w.submit(2, {{"w", 5}}, l.sm);
  l.confirm();
  l.w.take_released();
  // 6 of 10 used in 100 ms: 60/s, so a window lasting kWindowTargetMs needs 120.
  std::vector<Command> want = l.w.reservations(l.sm, 1100);
  ASSERT_EQ(want.size(), 1u) << "half used: the next is proposed before anything waits";
  EXPECT_EQ(want[0].value, l.sm.find("w")->last + 6 * kWindowTargetMs / 100);
}

}  // namespace
}  // namespace ticketd::tickets
