#include "ticketd/tickets/window.h"

#include <algorithm>

#include "ticketd/tickets/bugs.h"

namespace ticketd::tickets {

#ifdef TICKETD_TICKETS_BUGS
#define TICKETD_WINDOW_BUG(name) (testing::bugs.name)
#else
#define TICKETD_WINDOW_BUG(name) false
#endif

void WindowServer::set_leader(uint64_t term) {
  if (term == term_) return;
  fail_all();
  if (TICKETD_WINDOW_BUG(window_keeps_old_windows)) {
    for (auto& [name, q] : seqs_) q.pending_index = 0;
  } else {
    seqs_.clear();
  }
  term_ = term;
  min_round_ = next_round_;
  round_wanted_ = false;
  rounds_in_flight_ = 0;  // an earlier term's rounds are ignored when they end (min_round_)
}

void WindowServer::fail_all() {
  for (Batch& b : batches_) released_.push_back(WindowRelease{b.id, false, {}});
  batches_.clear();
}

void WindowServer::submit(uint64_t id, std::vector<Command::Item> items, const StateMachine& sm) {
  if (term_ == 0) {
    released_.push_back(WindowRelease{id, false, {}});
    return;
  }
  for (const Command::Item& it : items) seqs_.try_emplace(it.name);
  batches_.push_back(Batch{id, std::move(items), next_round_, false, {}});
  round_wanted_ = true;
  assign(sm);
}

std::optional<uint64_t> WindowServer::round_to_start() {
  if (!round_wanted_ || term_ == 0) return std::nullopt;
  if (max_rounds_in_flight_ > 0 && rounds_in_flight_ >= max_rounds_in_flight_) return std::nullopt;
  round_wanted_ = false;
  ++rounds_in_flight_;
  return next_round_++;
}

void WindowServer::round_done(uint64_t ctx, bool ok) {
  if (ctx < min_round_ || ctx >= next_round_) return;  // an earlier term's, or not ours
  if (rounds_in_flight_ > 0) --rounds_in_flight_;
  if (!ok) {
    // Leadership lost (or the round could not start): nothing waiting may be released.
    fail_all();
    return;
  }
  confirmed_round_ = std::max(confirmed_round_, ctx);
  release();
}

void WindowServer::lease_confirms() {
  if (term_ == 0) return;
  // Every batch so far waits for a round <= next_round_; later ones get a later round.
  confirmed_round_ = std::max(confirmed_round_, next_round_);
  ++next_round_;
  round_wanted_ = false;
  release();
}

void WindowServer::add_window(Seq& q, uint64_t lo, uint64_t hi) {
  if (lo > hi) return;
  if (!q.windows.empty() && q.windows.back().hi != UINT64_MAX && q.windows.back().hi + 1 == lo) {
    q.windows.back().hi = hi;
  } else {
    q.windows.push_back(Range{lo, hi});
  }
}

uint64_t WindowServer::available(std::string_view name) const {
  auto it = seqs_.find(name);
  if (it == seqs_.end()) return 0;
  uint64_t n = 0;
  for (const Range& r : it->second.windows) n += r.hi - r.lo + 1;
  return n;
}

bool WindowServer::has_pending_reservation(std::string_view name) const {
  auto it = seqs_.find(name);
  return it != seqs_.end() && it->second.pending_index != 0;
}

bool WindowServer::try_assign(Batch& b, const StateMachine& sm) {
  // All items or none: first check each can be served, then take.
  std::map<std::string_view, uint64_t> want;
  for (const Command::Item& it : b.items) {
    if (it.n > 0) want[it.name] += it.n;
  }
  for (const auto& [name, n] : want) {
    const Sequence* s = sm.find(name);
    if (s == nullptr || s->mode != Mode::kWindow) continue;  // answered as an error below
    Seq& q = seqs_[std::string(name)];
    bool fits = false;
    for (const Range& r : q.windows) fits = fits || r.hi - r.lo >= n - 1;
    if (!fits) return false;
  }
  b.results.clear();
  for (const Command::Item& it : b.items) {
    ItemResult ir;
    const Sequence* s = sm.find(it.name);
    if (s == nullptr) {
      ir.status = Status::kNoSuchSequence;
    } else if (s->mode != Mode::kWindow || it.n == 0) {
      ir.status = Status::kInvalid;
    } else {
      Seq& q = seqs_[it.name];
      // The first window with room; the rest of the ones before it is a gap (never served).
      while (q.windows.front().hi - q.windows.front().lo < it.n - 1) q.windows.pop_front();
      Range& r = q.windows.front();
      ir.first = r.lo;
      if (r.hi - r.lo == it.n - 1) {
        q.windows.pop_front();
      } else {
        r.lo += it.n;
      }
      q.taken += it.n;
    }
    b.results.push_back(ir);
  }
  b.assigned = true;
  return true;
}

void WindowServer::assign(const StateMachine& sm) {
  // Arrival order: a batch waits while an earlier one waits, so a later batch never gets
  // lower tickets than an earlier one of this leader.
  bool waits = false;
  for (Batch& b : batches_) {
    if (b.assigned) continue;
    if (!waits && try_assign(b, sm)) continue;
    if (!waits) {
      waits = true;
      for (auto& [name, q] : seqs_) q.unmet = 0;
    }
    // Everything that waits counts toward the next reservation, so a backlog clears in one.
    for (const Command::Item& it : b.items) {
      auto q = seqs_.find(it.name);
      if (q != seqs_.end() && it.n <= kMaxWindow - q->second.unmet) q->second.unmet += it.n;
    }
  }
  if (!waits) {
    for (auto& [name, q] : seqs_) q.unmet = 0;
  }
  release();
}

void WindowServer::release() {
  while (!batches_.empty() && batches_.front().assigned &&
         (batches_.front().round <= confirmed_round_ ||
          TICKETD_WINDOW_BUG(window_skips_confirmation))) {
    Batch& b = batches_.front();
    released_.push_back(WindowRelease{b.id, true, std::move(b.results)});
    batches_.pop_front();
  }
}

std::vector<WindowRelease> WindowServer::take_released() {
  std::vector<WindowRelease> out;
  out.swap(released_);
  return out;
}

std::vector<Command> WindowServer::reservations(const StateMachine& sm, uint64_t now_ms) {
  std::vector<Command> out;
  if (term_ == 0) return out;
  for (auto& [name, q] : seqs_) {
    const Sequence* s = sm.find(name);
    if (s == nullptr || s->mode != Mode::kWindow || q.pending_index != 0) continue;
    uint64_t avail = 0;
    for (const Range& r : q.windows) avail += r.hi - r.lo + 1;
    // Ahead of time: once half of the last reservation is used (only for a sequence in use
    // this term); at once when a batch waits.
    bool want = q.unmet > 0 || (q.taken > 0 && avail <= q.last_size / 2);
    if (!want || s->last == UINT64_MAX) continue;
    // Sized so a window lasts kWindowTargetMs at the rate since the last reservation.
    uint64_t elapsed = now_ms > q.rate_ms ? now_ms - q.rate_ms : 1;
    uint64_t used = q.taken - q.rate_taken;
    uint64_t by_rate = q.rate_ms == 0 ? 0 : used * kWindowTargetMs / elapsed;
    uint64_t size = std::max({s->window, by_rate, q.unmet});
    size = std::min(size, kMaxWindow);
    uint64_t up_to = s->last > UINT64_MAX - size ? UINT64_MAX : s->last + size;
    q.last_size = size;
    q.rate_taken = q.taken;
    q.rate_ms = now_ms == 0 ? 1 : now_ms;
    out.push_back(Command::reserve(name, up_to));
  }
  return out;
}

void WindowServer::proposed(const Command& reserve, uint64_t index, uint64_t term,
                            const StateMachine& sm) {
  if (term != term_ || reserve.kind != Command::Kind::kReserve) return;
  Seq& q = seqs_[reserve.name];
  q.pending_index = index;
  q.pending_term = term;
  if (TICKETD_WINDOW_BUG(window_serves_uncommitted)) {
    const Sequence* s = sm.find(reserve.name);
    if (s != nullptr && s->last < reserve.value) add_window(q, s->last + 1, reserve.value);
    assign(sm);
  }
}

void WindowServer::applied(uint64_t index, uint64_t term, const Command& c, const ApplyResult& r,
                           const StateMachine& sm) {
  if (term_ == 0) return;
  for (auto& [name, q] : seqs_) {
    if (q.pending_index == 0 || index < q.pending_index) continue;
    bool ours = index == q.pending_index && term == q.pending_term && term == term_ &&
                c.kind == Command::Kind::kReserve && c.name == name;
    q.pending_index = 0;
    if (!ours || r.status != Status::kOk || r.items.size() != 1 ||
        r.items[0].status != Status::kOk || TICKETD_WINDOW_BUG(window_serves_uncommitted)) {
      continue;
    }
    // Committed: [first, last] is ours alone (the log claims each ticket once).
    add_window(q, r.items[0].first, r.last);
  }
  if (c.kind == Command::Kind::kAllocate) {
    // An Allocate of a window sequence (a batch routed before the sequence changed mode)
    // claims above every reservation: a window ticket after it would be lower than tickets
    // its client may already hold. The windows left are a gap.
    for (size_t i = 0; i < c.items.size() && i < r.items.size(); ++i) {
      auto it = seqs_.find(c.items[i].name);
      if (it != seqs_.end() && r.items[i].status == Status::kOk && c.items[i].n > 0) {
        it->second.windows.clear();
      }
    }
  } else if (r.status == Status::kOk) {
    auto it = seqs_.find(c.name);
    if (it != seqs_.end()) {
      Seq& q = it->second;
      switch (c.kind) {
        case Command::Kind::kFloor:
          // Every ticket handed out after the Floor applied is above its value.
          while (!q.windows.empty() && q.windows.front().hi <= c.value) q.windows.pop_front();
          if (!q.windows.empty() && q.windows.front().lo <= c.value) q.windows.front().lo = c.value + 1;
          break;
        case Command::Kind::kDrop:
        case Command::Kind::kCreate:
        case Command::Kind::kCreateWindow:
          q.windows.clear();  // another sequence under this name: none of its tickets are ours
          break;
        default:
          break;
      }
    }
  }
  assign(sm);
}

}  // namespace ticketd::tickets
