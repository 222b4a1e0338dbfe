// Prometheus's text exposition format 0.0.4, written by hand (see README, "Dependencies").
// Promises: each family's HELP and TYPE once, before its samples; label values escaped
// (\\, \", \n); histograms as cumulative `_bucket{le=...}` series ending at +Inf, plus
// `_sum` and `_count`. Never: checks that a family's samples are contiguous (the caller
// writes one family at a time).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "ticketd/metrics/stats.h"

namespace ticketd::metrics {

using Label = std::pair<std::string_view, std::string_view>;

class TextExposition {
 public:
  // `type`: counter, gauge, histogram (or untyped).
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, std::initializer_list<Label> labels, double value);
  void sample(std::string_view name, std::span<const Label> labels, double value);
  // A histogram recorded in LatencyHistogram's integer units (nanoseconds for durations),
  // exposed divided by `unit` (1e9: seconds) at the bounds `le` (ascending, in exposed units),
  // then +Inf. A bucket counts under a bound when its largest value is at or below the bound
  // times `unit`, so a bound inside a bucket counts low by at most that bucket (~3% wide).
  void histogram(std::string_view name, std::span<const Label> labels, const HistogramCounts& h,
                 uint64_t sum_raw, std::span<const double> le, double unit);
  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void labels(std::span<const Label> labels, std::string_view extra_name = {},
              std::string_view extra_value = {});
  void number(double v);
  std::string out_;
};

// A label value with \\, \" and \n escaped.
std::string escape_label_value(std::string_view v);
// A float as the format writes it: integers without a fraction, +Inf/-Inf/NaN spelled out.
std::string format_number(double v);

}  // namespace ticketd::metrics
