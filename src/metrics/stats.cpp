#include "ticketd/metrics/stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace ticketd::metrics {

uint64_t LatencyHistogram::bucket_low(size_t i) {
  constexpr size_t kSub = size_t{1} << kSubBits;
  if (i < 2 * kSub) return i;
  size_t shift = (i >> kSubBits) - 1;
  uint64_t mant = i - (shift << kSubBits);  // in [32, 64)
  return mant << shift;
}

uint64_t LatencyHistogram::bucket_high(size_t i) {
  return bucket_low(i + 1) - 1;  // the last bucket's: 2^36 - 1 (longer ones count there too)
}

void HistogramCounts::add(const LatencyHistogram& h) {
  if (b.empty()) b.assign(LatencyHistogram::kBuckets, 0);
  for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
    uint64_t n = h.count(i);
    b[i] += n;
    total += n;
  }
}

void HistogramCounts::add(const HistogramCounts& h) {
  if (h.b.empty()) return;
  if (b.empty()) b.assign(LatencyHistogram::kBuckets, 0);
  for (size_t i = 0; i < b.size(); ++i) b[i] += h.b[i];
  total += h.total;
}

void HistogramCounts::subtract(const HistogramCounts& h) {
  if (h.b.empty() || b.empty()) return;
  total = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    b[i] = b[i] > h.b[i] ? b[i] - h.b[i] : 0;
    total += b[i];
  }
}

uint64_t HistogramCounts::value_at_percentile(double p) const {
  if (total == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  // The rank of the value at p, as HdrHistogram counts it: at least 1.
  auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total)));
  rank = std::max<uint64_t>(rank, 1);
  uint64_t seen = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    seen += b[i];
    if (seen >= rank) return LatencyHistogram::bucket_high(i);
  }
  return LatencyHistogram::bucket_high(b.size() - 1);
}

std::string_view ErrorCounters::error_word(std::string_view reply) {
  if (!reply.empty() && reply[0] == '-') reply.remove_prefix(1);
  size_t end = 0;
  while (end < reply.size() && end < kMaxName - 1 && reply[end] != ' ' && reply[end] != '\r' &&
         reply[end] != '\n') {
    ++end;
  }
  return reply.substr(0, end);
}

void ErrorCounters::add(std::string_view word, uint64_t n) {
  total_.add(n);
  if (word.empty()) return;
  size_t used = used_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < used; ++i) {
    if (word == name(i)) {
      slots_[i].count.add(n);
      return;
    }
  }
  if (used == kMaxKinds) return;
  Slot& s = slots_[used];
  size_t len = std::min(word.size(), kMaxName - 1);
  std::memcpy(s.name, word.data(), len);
  s.len = static_cast<uint8_t>(len);
  s.count.add(n);
  used_.store(used + 1, std::memory_order_release);  // readers see the name before the slot
}

CommandStats::CommandStats(size_t commands)
    : n_(commands), cmds_(std::make_unique<CommandCounters[]>(commands)) {}

LatencyHistogram* CommandStats::first_histogram(CommandCounters& c) {
  auto* h = new LatencyHistogram();  // once per command and shard
  c.hist.store(h, std::memory_order_release);
  return h;
}

void StatsView::add(const CommandStats& s) {
  if (cmds.size() < s.size()) cmds.resize(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const CommandCounters& c = s.at(i);
    Command& d = cmds[i];
    d.calls += c.calls.get();
    d.ns += c.ns.get();
    d.rejected += c.rejected.get();
    d.failed += c.failed.get();
    if (const LatencyHistogram* h = c.hist.load(std::memory_order_acquire)) d.hist.add(*h);
  }
  const ErrorCounters& e = s.errors();
  size_t kinds = e.kinds();
  for (size_t i = 0; i < kinds; ++i) {
    std::string_view n = e.name(i);
    auto it = std::find_if(errors.begin(), errors.end(), [&](const auto& p) { return p.first == n; });
    if (it == errors.end()) {
      errors.emplace_back(std::string(n), e.count(i));
    } else {
      it->second += e.count(i);
    }
  }
  error_total += e.total();
}

void StatsView::subtract(const StatsView& base) {
  auto less = [](uint64_t a, uint64_t b) { return a > b ? a - b : 0; };
  for (size_t i = 0; i < cmds.size() && i < base.cmds.size(); ++i) {
    Command& d = cmds[i];
    const Command& b = base.cmds[i];
    d.calls = less(d.calls, b.calls);
    d.ns = less(d.ns, b.ns);
    d.rejected = less(d.rejected, b.rejected);
    d.failed = less(d.failed, b.failed);
    d.hist.subtract(b.hist);
  }
  for (auto& [name, n] : errors) {
    for (const auto& [bn, bc] : base.errors) {
      if (bn == name) n = less(n, bc);
    }
  }
  std::erase_if(errors, [](const auto& p) { return p.second == 0; });
  error_total = less(error_total, base.error_total);
}

namespace {
void appendf(std::string& out, const char* fmt, auto... args) {
  char line[256];
  int n = std::snprintf(line, sizeof(line), fmt, args...);
  if (n > 0) out.append(line, std::min<size_t>(static_cast<size_t>(n), sizeof(line) - 1));
}
}  // namespace

void append_commandstats(std::string& out, const StatsView& v,
                         const std::vector<std::string_view>& names) {
  out += "# Commandstats\r\n";
  for (size_t i = 0; i < v.cmds.size() && i < names.size(); ++i) {
    const StatsView::Command& c = v.cmds[i];
    if (c.calls == 0 && c.rejected == 0 && c.failed == 0) continue;
    unsigned long long usec = c.ns / 1000;
    double per_call = c.calls == 0 ? 0.0 : static_cast<double>(c.ns) / 1000.0 / static_cast<double>(c.calls);
    out += "cmdstat_";
    out += names[i];
    appendf(out, ":calls=%llu,usec=%llu,usec_per_call=%.2f,rejected_calls=%llu,failed_calls=%llu\r\n",
            static_cast<unsigned long long>(c.calls), usec, per_call,
            static_cast<unsigned long long>(c.rejected), static_cast<unsigned long long>(c.failed));
  }
}

void append_errorstats(std::string& out, const StatsView& v) {
  out += "# Errorstats\r\n";
  for (const auto& [name, n] : v.errors) {
    out += "errorstat_";
    out += name;
    appendf(out, ":count=%llu\r\n", static_cast<unsigned long long>(n));
  }
}

void append_latencystats(std::string& out, const StatsView& v,
                         const std::vector<std::string_view>& names) {
  out += "# Latencystats\r\n";
  for (size_t i = 0; i < v.cmds.size() && i < names.size(); ++i) {
    const HistogramCounts& h = v.cmds[i].hist;
    if (h.total == 0) continue;
    out += "latency_percentiles_usec_";
    out += names[i];
    appendf(out, ":p50=%.3f,p99=%.3f,p99.9=%.3f\r\n",
            static_cast<double>(h.value_at_percentile(50)) / 1000.0,
            static_cast<double>(h.value_at_percentile(99)) / 1000.0,
            static_cast<double>(h.value_at_percentile(99.9)) / 1000.0);
  }
}

}  // namespace ticketd::metrics
