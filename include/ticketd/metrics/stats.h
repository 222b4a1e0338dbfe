// Counters and latency histograms that one thread writes and any thread reads.
// Promises: a write is a relaxed load and a relaxed store (no locked read-modify-write, no
// lock, no allocation except a command's first histogram); readers see values that only
// grow, so a sum taken later is never below one taken earlier. Never: shared between
// writers; this room knows no sockets, threads, clocks or commands' meanings.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ticketd::metrics {

// A counter with one writer: the owning thread adds, any thread reads.
class Counter {
 public:
  void add(uint64_t n) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Durations in nanoseconds, log-linear buckets: exact below 64 ns, then 32 buckets per
// doubling (each at most 1/32 of its values wide, ~3%) up to 2^36 ns (68.7 s); longer
// durations land in the last bucket. 8 KiB.
class LatencyHistogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr size_t kBuckets = 1024;
  static size_t bucket_of(uint64_t ns) {
    constexpr uint64_t kTwoSub = uint64_t{2} << kSubBits;
    if (ns < kTwoSub) return static_cast<size_t>(ns);
    int msb = 63 - __builtin_clzll(ns);
    size_t shift = static_cast<size_t>(msb - kSubBits);
    size_t i = (shift << kSubBits) + static_cast<size_t>(ns >> shift);
    return i < kBuckets ? i : kBuckets - 1;
  }
  static uint64_t bucket_low(size_t i);   // the smallest duration bucket i holds
  static uint64_t bucket_high(size_t i);  // the largest

  void record(uint64_t ns, uint64_t count = 1) { b_[bucket_of(ns)].add(count); }
  uint64_t count(size_t i) const { return b_[i].get(); }

 private:
  std::array<Counter, kBuckets> b_;
};

// A plain copy of histograms: summed over shards, less a reset's baseline.
struct HistogramCounts {
  std::vector<uint64_t> b;  // empty: nothing recorded
  uint64_t total = 0;

  void add(const LatencyHistogram& h);
  void add(const HistogramCounts& h);
  void subtract(const HistogramCounts& h);  // clamps at 0 per bucket
  // The largest duration of the bucket holding the p-th percentile (HdrHistogram's
  // value_at_percentile: `highest equivalent value`); 0 when empty.
  uint64_t value_at_percentile(double p) const;
};

// One command's figures on one shard.
struct CommandCounters {
  Counter calls;     // executed (Redis's `calls`)
  Counter ns;        // time from reading the command to its reply being ready, summed
  Counter rejected;  // refused before it ran (arity, permission, a redirect: -MOVED ...)
  Counter failed;    // ran and answered an error
  std::atomic<LatencyHistogram*> hist{nullptr};  // made at the first call (writer only)
  CommandCounters() = default;
  ~CommandCounters() { delete hist.load(); }
  CommandCounters(const CommandCounters&) = delete;
  CommandCounters& operator=(const CommandCounters&) = delete;
};

// Error replies by their first word (`MOVED`, `ERR`, `CLUSTERDOWN`, ...), at most
// kMaxKinds kinds; later kinds are counted only in `total`.
class ErrorCounters {
 public:
  static constexpr size_t kMaxKinds = 64;
  static constexpr size_t kMaxName = 32;
  // The first word of an error reply ("-MOVED 5718 ...\r\n" or "MOVED 5718 ..."): up to a
  // space or CR, at most kMaxName - 1 bytes.
  static std::string_view error_word(std::string_view reply);
  void add(std::string_view word, uint64_t n = 1);
  size_t kinds() const { return used_.load(std::memory_order_acquire); }
  std::string_view name(size_t i) const { return {slots_[i].name, slots_[i].len}; }
  uint64_t count(size_t i) const { return slots_[i].count.get(); }
  uint64_t total() const { return total_.get(); }

 private:
  struct Slot {
    char name[kMaxName] = {};
    uint8_t len = 0;
    Counter count;
  };
  std::array<Slot, kMaxKinds> slots_;
  std::atomic<size_t> used_{0};
  Counter total_;
};

// Every command's counters and the error counters of one shard (one writer: its thread).
class CommandStats {
 public:
  explicit CommandStats(size_t commands);
  size_t size() const { return n_; }
  CommandCounters& at(size_t id) { return cmds_[id]; }
  const CommandCounters& at(size_t id) const { return cmds_[id]; }
  ErrorCounters& errors() { return errors_; }
  const ErrorCounters& errors() const { return errors_; }

  // `count` calls of command `id` that took `ns` each; `failed`: they answered an error.
  // Inline: the ticket path calls it once per request.
  void record_call(size_t id, uint64_t ns, uint64_t count, bool failed) {
    CommandCounters& c = cmds_[id];
    c.calls.add(count);
    c.ns.add(ns * count);
    if (failed) c.failed.add(count);
    LatencyHistogram* h = c.hist.load(std::memory_order_relaxed);
    if (h == nullptr) h = first_histogram(c);
    h->record(ns, count);
  }
  void record_rejected(size_t id, uint64_t count) { cmds_[id].rejected.add(count); }

 private:
  static LatencyHistogram* first_histogram(CommandCounters& c);
  size_t n_;
  std::unique_ptr<CommandCounters[]> cmds_;
  ErrorCounters errors_;
};

// A plain copy of every shard's CommandStats summed (INFO, /metrics), or a reset's baseline.
struct StatsView {
  struct Command {
    uint64_t calls = 0, ns = 0, rejected = 0, failed = 0;
    HistogramCounts hist;
  };
  std::vector<Command> cmds;
  std::vector<std::pair<std::string, uint64_t>> errors;  // by first appearance
  uint64_t error_total = 0;

  explicit StatsView(size_t commands = 0) : cmds(commands) {}
  void add(const CommandStats& s);
  void subtract(const StatsView& baseline);  // clamps at 0
};

// Redis 7's INFO sections from a view; `names[i]` is command i's name. Commands never
// called (nor rejected nor failed) are left out, as Redis leaves them out.
void append_commandstats(std::string& out, const StatsView& v,
                         const std::vector<std::string_view>& names);
void append_errorstats(std::string& out, const StatsView& v);
// p50, p99 and p99.9 in microseconds, 3 decimals (Redis's latency-tracking-info-percentiles
// default), for each command that has a call.
void append_latencystats(std::string& out, const StatsView& v,
                         const std::vector<std::string_view>& names);

}  // namespace ticketd::metrics
