// Latency tracer for development builds (cmake -DTICKETD_TRACE=ON; tools/latency-trace).
// Each TICKETD_TRACE_EV records (CLOCK_MONOTONIC ns, event name, two numbers) into a fixed
// in-memory array; at exit the process writes it to "$TICKETD_TRACE_OUT.<pid>". The clock is
// shared by every process on the machine, so the traces of a whole local cluster line up.
// In normal builds the macro compiles to nothing.
#pragma once

#ifdef TICKETD_TRACE

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace ticketd::server::trace {

struct Event {
  uint64_t ns;
  const char* what;  // a string literal
  uint64_t a;
  uint64_t b;
};

class Recorder {
 public:
  static constexpr size_t kCapacity = 1u << 20;
  Recorder() {
    const char* out = std::getenv("TICKETD_TRACE_OUT");
    if (out == nullptr || *out == '\0') return;
    path_ = out;
    events_ = new Event[kCapacity];
  }
  ~Recorder() {
    if (events_ == nullptr) return;
    char path[512];
    std::snprintf(path, sizeof(path), "%s.%d", path_, static_cast<int>(::getpid()));
    if (FILE* f = std::fopen(path, "w")) {
      size_t n = next_.load();
      if (n > kCapacity) n = kCapacity;
      for (size_t i = 0; i < n; ++i) {
        const Event& e = events_[i];
        std::fprintf(f, "%llu %s %llu %llu\n", static_cast<unsigned long long>(e.ns), e.what,
                     static_cast<unsigned long long>(e.a), static_cast<unsigned long long>(e.b));
      }
      std::fclose(f);
    }
    delete[] events_;
  }
  void record(const char* what, uint64_t a, uint64_t b) {
    if (events_ == nullptr) return;
    size_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= kCapacity) return;  // full: the first kCapacity events are kept
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    events_[i] = Event{static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull +
                           static_cast<uint64_t>(ts.tv_nsec),
                       what, a, b};
  }

 private:
  const char* path_ = nullptr;
  Event* events_ = nullptr;
  std::atomic<size_t> next_{0};
};

inline Recorder recorder;

}  // namespace ticketd::server::trace

#define TICKETD_TRACE_EV(what, a, b)                                               \
  ::ticketd::server::trace::recorder.record((what), static_cast<uint64_t>(a),      \
                                            static_cast<uint64_t>(b))
#else
#define TICKETD_TRACE_EV(what, a, b) ((void)0)
#endif
