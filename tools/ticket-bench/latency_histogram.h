// LatencyHistogram: an HDR-style log-linear histogram of nanosecond values with fixed
// memory (about 43 KiB) and a relative error below 1% (128 linear steps per power of two).
// Recording never allocates and never fails: values past the top are clamped into the last
// bucket, and the exact maximum is kept on the side.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace ticketd::bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 7;                      // 128 sub-buckets per octave
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  static constexpr int kMaxExponent = 40;                 // 2^47 ns ~ 39 hours of range
  static constexpr size_t kBuckets = 2 * kSub + kMaxExponent * kSub;

  void Record(uint64_t ns) {
    counts_[IndexOf(ns)]++;
    ++count_;
    sum_ += ns;
    max_ = std::max(max_, ns);
    min_ = std::min(min_, ns);
  }

  void Merge(const LatencyHistogram& other) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    max_ = std::max(max_, other.max_);
    min_ = std::min(min_, other.min_);
  }

  uint64_t Count() const { return count_; }
  uint64_t Max() const { return count_ ? max_ : 0; }
  uint64_t Min() const { return count_ ? min_ : 0; }
  double Mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0.0; }

  // The smallest bucket upper bound that covers `percentile`% of the values (the HDR
  // "highest equivalent value"), never above the exact maximum.
  uint64_t Percentile(double percentile) const {
    if (count_ == 0) return 0;
    double want = std::ceil(percentile / 100.0 * static_cast<double>(count_));
    uint64_t rank = std::clamp<uint64_t>(static_cast<uint64_t>(want), 1, count_);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(UpperBound(i), max_);
    }
    return max_;
  }

  // Bucket layout: values below 2*kSub have their own bucket; above, each octave
  // [2^k, 2^(k+1)) is cut into kSub equal steps.
  static size_t IndexOf(uint64_t v) {
    if (v < 2 * kSub) return static_cast<size_t>(v);
    int top = 63 - std::countl_zero(v);      // v in [2^top, 2^(top+1))
    int shift = top - kSubBits;              // >= 1
    if (shift > kMaxExponent) return kBuckets - 1;
    uint64_t sub = (v >> shift) - kSub;      // 0 .. kSub-1
    return static_cast<size_t>(2 * kSub + (shift - 1) * kSub + sub);
  }

  static uint64_t UpperBound(size_t index) {
    if (index < 2 * kSub) return index;
    size_t rel = index - 2 * kSub;
    int shift = static_cast<int>(rel / kSub) + 1;
    uint64_t sub = rel % kSub;
    return ((kSub + sub + 1) << shift) - 1;
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
};

}  // namespace ticketd::bench
