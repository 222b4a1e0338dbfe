// EntryStaging and RangeCutter: shard batches summed into one Allocate entry (one item per
// sequence), applied by the real state machine, and cut back per batch in submission order.
#include "../../src/cluster/allocate_batch.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <set>

namespace ticketd::cluster {
namespace {

using server::BatchResult;
using server::BatchStatus;
using server::NamedBatch;

std::unique_ptr<NamedBatch> named(std::vector<std::pair<std::string, uint64_t>> slots) {
  auto b = std::make_unique<NamedBatch>();
  for (auto& [name, n] : slots) b->slots.push_back(NamedBatch::Slot{name, n, 0, 0, BatchStatus::kOk});
  return b;
}

tickets::ApplyResult apply(tickets::StateMachine& sm, uint64_t index, const EntryStaging& st) {
  tickets::Command cmd;
  EXPECT_EQ(tickets::decode(st.payload(), &cmd), "");
  return sm.apply(index, cmd);
}

TEST(EntryStaging, DefaultAloneIsTheEightByteEntry) {
  EntryStaging st;
  EXPECT_TRUE(st.empty());
  st.add(3, nullptr);
  st.add(4, nullptr);
  EXPECT_EQ(st.total(), 7u);
  EXPECT_EQ(st.payload().size(), 8u) << "the hot path keeps the earlier builds' entry";
  tickets::StateMachine sm;
  tickets::ApplyResult r = apply(sm, 1, st);
  RangeCutter cut(r, true, 0);
  BatchResult a = cut.next(3, nullptr);
  BatchResult b = cut.next(4, nullptr);
  EXPECT_EQ(a.start, 1u);
  EXPECT_EQ(b.start, 4u);
  EXPECT_EQ(b.status, BatchStatus::kOk);
}

TEST(EntryStaging, OneItemPerSequenceAcrossBatches) {
  tickets::StateMachine sm;
  sm.apply(1, tickets::Command::create("orders", 100));
  sm.apply(2, tickets::Command::create("users", 1));
  EntryStaging st;
  auto b1 = named({{"orders", 2}, {"users", 1}});
  auto b2 = named({{"users", 5}, {"typo", 1}, {"orders", 3}});
  st.add(1, b1.get());
  st.add(0, b2.get());
  st.add(2, nullptr);
  EXPECT_EQ(st.named_items(), 3u) << "orders, users, typo: one item each";
  EXPECT_EQ(st.total(), 1u + 3 + 9 + 2);
  EXPECT_EQ(st.default_total(), 3u);
  tickets::Command cmd;
  ASSERT_EQ(tickets::decode(st.payload(), &cmd), "");
  ASSERT_EQ(cmd.items.size(), 4u);
  EXPECT_EQ(cmd.items[0], (tickets::Command::Item{"default", 3}));
  EXPECT_EQ(cmd.items[1], (tickets::Command::Item{"orders", 5}));
  EXPECT_EQ(cmd.items[2], (tickets::Command::Item{"users", 6}));
  EXPECT_EQ(cmd.items[3], (tickets::Command::Item{"typo", 1}));

  tickets::ApplyResult r = sm.apply(3, cmd);
  RangeCutter cut(r, true, st.named_items());
  BatchResult r1 = cut.next(1, b1.get());
  BatchResult r2 = cut.next(0, b2.get());
  BatchResult r3 = cut.next(2, nullptr);
  // Submission order within each sequence: b1 before b2.
  EXPECT_EQ(r1.start, 1u);
  EXPECT_EQ(r3.start, 2u);
  EXPECT_EQ(r2.status, BatchStatus::kOk) << "no default part: never a failure";
  EXPECT_EQ(b1->slots[0].first, 100u);  // orders 100..101
  EXPECT_EQ(b2->slots[2].first, 102u);  // orders 102..104
  EXPECT_EQ(b1->slots[1].first, 1u);    // users 1
  EXPECT_EQ(b2->slots[0].first, 2u);    // users 2..6
  EXPECT_EQ(b2->slots[1].status, BatchStatus::kNoSuchSequence) << "only the typo fails";
  EXPECT_EQ(b2->slots[0].status, BatchStatus::kOk);
  EXPECT_EQ(sm.find("typo"), nullptr);
}

TEST(EntryStaging, AnExhaustedSequenceFailsAloneAndDefaultMayBeAbsent) {
  tickets::StateMachine sm;
  sm.apply(1, tickets::Command::create("big", UINT64_MAX - 1));  // last = 2^64-3
  sm.apply(2, tickets::Command::create("small", 1));
  EntryStaging st;
  auto b = named({{"big", 5}, {"small", 2}});
  st.add(0, b.get());
  tickets::ApplyResult r = apply(sm, 3, st);
  RangeCutter cut(r, false, st.named_items());
  BatchResult res = cut.next(0, b.get());
  EXPECT_EQ(res.status, BatchStatus::kOk);
  EXPECT_EQ(b->slots[0].status, BatchStatus::kExhausted);
  EXPECT_EQ(b->slots[1].status, BatchStatus::kOk);
  EXPECT_EQ(b->slots[1].first, 1u);
}

TEST(EntryStaging, FitsBoundsTheEntry) {
  EntryStaging st;
  auto full = std::make_unique<NamedBatch>();
  for (size_t i = 0; i < server::kMaxBatchSequences; ++i) {
    full->slots.push_back(NamedBatch::Slot{"s" + std::to_string(i), 1, 0, 0, BatchStatus::kOk});
  }
  size_t batches = 0;
  while (st.fits(full.get())) {
    // Distinct names each time, so the entry fills up.
    for (auto& sl : full->slots) sl.name = "b" + std::to_string(batches) + "-" + sl.name;
    st.add(0, full.get());
    ++batches;
  }
  EXPECT_EQ(batches, kMaxEntrySequences / server::kMaxBatchSequences);
  EXPECT_LE(st.named_items(), kMaxEntrySequences);
  EXPECT_TRUE(st.fits(nullptr)) << "default tickets always fit";
  st.clear();
  EXPECT_TRUE(st.empty());
  EXPECT_TRUE(st.fits(full.get()));
}

// Random batches over a few sequences, entry after entry: every ticket of every sequence
// is handed out once, in submission order, with blocks contiguous.
TEST(EntryStaging, RandomBatchesCutInSubmissionOrder) {
  std::mt19937_64 rng(7);
  tickets::StateMachine sm;
  std::vector<std::string> names = {"a", "b", "c", "d"};
  uint64_t index = 1;
  for (size_t i = 0; i + 1 < names.size(); ++i) sm.apply(index++, tickets::Command::create(names[i], 10 * i + 1));
  std::map<std::string, uint64_t> expect_next = {{"default", 1}, {"a", 1}, {"b", 11}, {"c", 21}};
  for (int entry = 0; entry < 200; ++entry) {
    EntryStaging st;
    std::vector<std::pair<uint64_t, std::unique_ptr<NamedBatch>>> batches;
    int nb = 1 + static_cast<int>(rng() % 5);
    for (int k = 0; k < nb; ++k) {
      uint64_t dn = rng() % 3;
      std::unique_ptr<NamedBatch> nbp;
      if (rng() % 2) {
        std::set<std::string> used;
        std::vector<std::pair<std::string, uint64_t>> slots;
        for (int j = 0; j < 3; ++j) {
          const std::string& nm = names[rng() % names.size()];
          if (used.insert(nm).second) slots.push_back({nm, 1 + rng() % 1000});
        }
        nbp = named(slots);
      }
      if (dn == 0 && !nbp) dn = 1;
      st.add(dn, nbp.get());
      batches.emplace_back(dn, std::move(nbp));
    }
    tickets::ApplyResult r = apply(sm, index++, st);
    RangeCutter cut(r, st.default_total() > 0, st.named_items());
    for (auto& [dn, nbp] : batches) {
      BatchResult res = cut.next(dn, nbp.get());
      if (dn > 0) {
        ASSERT_EQ(res.status, BatchStatus::kOk);
        ASSERT_EQ(res.start, expect_next["default"]);
        expect_next["default"] += dn;
      }
      if (!nbp) continue;
      for (const NamedBatch::Slot& sl : nbp->slots) {
        if (sl.name == "d") {
          EXPECT_EQ(sl.status, BatchStatus::kNoSuchSequence);
          continue;
        }
        ASSERT_EQ(sl.status, BatchStatus::kOk);
        ASSERT_EQ(sl.first, expect_next[sl.name]) << sl.name;
        expect_next[sl.name] += sl.total;
      }
    }
  }
  for (auto& [name, next] : expect_next) EXPECT_EQ(sm.find(name)->last, next - 1) << name;
}

}  // namespace
}  // namespace ticketd::cluster
