// A bounded single-producer single-consumer ring between two shard threads.
// Promises: lock-free, no allocation after construction, FIFO. Never blocks: a full
// queue makes try_push() fail and the producer keeps the item for a later turn.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>

#include "ticketd/base/check.h"

namespace ticketd::server {

template <typename T>
class SpscQueue {
 public:
  explicit SpscQueue(size_t capacity) : cap_(capacity), slots_(new T[capacity]) {
    TICKETD_CHECK(capacity >= 2 && (capacity & (capacity - 1)) == 0);
  }

  bool try_push(const T& v) {
    size_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ >= cap_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ >= cap_) return false;
    }
    slots_[tail & (cap_ - 1)] = v;
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  bool try_pop(T* out) {
    size_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) return false;
    }
    *out = slots_[head & (cap_ - 1)];
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

 private:
  const size_t cap_;
  std::unique_ptr<T[]> slots_;
  alignas(64) std::atomic<size_t> head_{0};
  size_t tail_cache_ = 0;  // consumer's view of tail
  alignas(64) std::atomic<size_t> tail_{0};
  size_t head_cache_ = 0;  // producer's view of head
};

}  // namespace ticketd::server
