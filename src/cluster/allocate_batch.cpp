#include "allocate_batch.h"

#include "ticketd/base/check.h"

namespace ticketd::cluster {

using server::BatchResult;
using server::BatchStatus;
using server::NamedBatch;

void EntryStaging::add(uint64_t default_n, NamedBatch* named) {
  TICKETD_CHECK(fits(named));
  total_ += default_n;
  default_total_ += default_n;
  if (named == nullptr) return;
  // One item per sequence however many shards and requests ask for it; each slot remembers
  // its item, so the cut finds its range without a lookup.
  for (NamedBatch::Slot& sl : named->slots) {
    auto [it, fresh] = index_.try_emplace(sl.name, static_cast<uint32_t>(items_.size()));
    if (fresh) items_.push_back({sl.name, 0});
    sl.item = it->second;
    items_[sl.item].n += sl.total;
    total_ += sl.total;
  }
}

std::string EntryStaging::payload() const {
  std::vector<tickets::Command::Item> items;
  items.reserve(items_.size() + 1);
  if (default_total_ > 0) items.push_back({std::string(tickets::kDefaultSequence), default_total_});
  items.insert(items.end(), items_.begin(), items_.end());
  return tickets::encode(tickets::Command::allocate(std::move(items)));
}

void EntryStaging::clear() {
  total_ = 0;
  default_total_ = 0;
  items_.clear();
  index_.clear();
}

BatchStatus item_status(tickets::Status st) {
  switch (st) {
    case tickets::Status::kOk: return BatchStatus::kOk;
    case tickets::Status::kNoSuchSequence: return BatchStatus::kNoSuchSequence;
    default: return BatchStatus::kExhausted;
  }
}

RangeCutter::RangeCutter(const tickets::ApplyResult& r, bool has_default, size_t named_items)
    : r_(r), base_(has_default ? 1 : 0), cursor_(named_items) {
  // Our own entry (same index and term): it holds exactly what was staged.
  TICKETD_CHECK(r.items.size() == base_ + named_items);
  if (has_default) {
    next_default_ = r.items[0].first;
    default_status_ = item_status(r.items[0].status);
  }
  for (size_t i = 0; i < named_items; ++i) cursor_[i] = r.items[base_ + i].first;
}

BatchResult RangeCutter::next(uint64_t default_n, NamedBatch* named) {
  if (named != nullptr) {
    for (NamedBatch::Slot& sl : named->slots) {
      TICKETD_CHECK(sl.item < cursor_.size());
      sl.status = item_status(r_.items[base_ + sl.item].status);
      sl.first = cursor_[sl.item];
      cursor_[sl.item] += sl.total;
    }
  }
  TICKETD_CHECK(default_n == 0 || base_ == 1);
  BatchResult res{next_default_, default_n, default_n > 0 ? default_status_ : BatchStatus::kOk,
                  named};
  next_default_ += default_n;
  return res;
}

}  // namespace ticketd::cluster
