// io: one io_uring event loop per thread, with caller-owned completions.
// Promises: every operation reports exactly one final completion to the Completion
// the caller passed (multishot ones may report many, the last without `more`).
// Must never: know what a ticket, a RESP command or a Raft message is.
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace ticketd::io {

// An intrusive completion (TigerBeetle style): embedded in the object that owns the
// operation, so submitting allocates nothing. `fn` runs on the loop's thread.
struct Completion {
  using Fn = void (*)(Completion* self, int32_t res, uint32_t flags);
  Fn fn = nullptr;
  void* owner = nullptr;  // free for the caller (usually the object holding it)
};

inline bool cqe_more(uint32_t flags) { return (flags & IORING_CQE_F_MORE) != 0; }
inline bool cqe_has_buffer(uint32_t flags) { return (flags & IORING_CQE_F_BUFFER) != 0; }
inline uint16_t cqe_buffer_id(uint32_t flags) {
  return static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
}

struct LoopOptions {
  unsigned entries = 4096;
  bool try_defer_taskrun = true;  // SINGLE_ISSUER | DEFER_TASKRUN where the kernel has it
};

// Create, submit to and run a Loop on ONE thread (the kernel ties a SINGLE_ISSUER ring to
// the thread that created it); other threads may only call wake() and stop().
class Loop {
 public:
  explicit Loop(const LoopOptions& opts = {});
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // What setup the kernel accepted ("defer_taskrun", "single_issuer" or "plain").
  const std::string& setup_mode() const { return setup_mode_; }
  io_uring* ring() { return &ring_; }

  // Operations. Each takes the caller's Completion; the Completion must stay alive
  // until its final completion (a CQE without IORING_CQE_F_MORE) has been delivered.
  void accept_multishot(int listen_fd, Completion* c);
  void recv_multishot(int fd, uint16_t buf_group, Completion* c);
  void send(int fd, const void* buf, size_t len, Completion* c);
  void write(int fd, const void* buf, size_t len, uint64_t offset, bool dsync, Completion* c);
  void fdatasync(int fd, Completion* c);
  void read(int fd, void* buf, size_t len, uint64_t offset, Completion* c);
  void connect(int fd, const void* addr, uint32_t addrlen, Completion* c);
  // A one-shot timer; `ts` must stay alive until the completion (-ETIME when it fires).
  void timeout(__kernel_timespec* ts, Completion* c);
  // Asks the kernel to cancel every operation submitted with `target`; the cancel's own
  // result goes to `c` (may be nullptr: then it is ignored).
  void cancel(Completion* target, Completion* c);
  // Queues a no-op that completes on a later turn (a deferred call without a timer).
  void nop(Completion* c);

  // Cross-thread wake-up: any thread may call target.wake(); the target loop then runs
  // its on_wake handler once on its own thread (several wakes may fold into one).
  // Uses IORING_OP_MSG_RING from `from` when it is given (no syscall of its own: it leaves
  // with the sender's next submit), else an eventfd write.
  void wake(Loop* from = nullptr);
  void set_on_wake(std::function<void()> fn) { on_wake_ = std::move(fn); }
  // Called after every turn's completions are handled: where batches are flushed.
  void set_on_turn_end(std::function<void()> fn) { on_turn_end_ = std::move(fn); }

  // Runs until stop() is called (from this thread or another, via wake).
  void run();
  // One turn: submit, wait for at least one completion (or `wait=false`: don't wait),
  // handle every ready completion, run the turn-end hook. Returns completions handled.
  int run_once(bool wait = true);
  void stop();
  bool stopping() const { return stop_.load(std::memory_order_acquire); }

  uint64_t turns() const { return turns_; }

 private:
  io_uring_sqe* get_sqe();
  static void on_eventfd(Completion* c, int32_t res, uint32_t flags);
  static void on_msg_ring_sent(Completion* c, int32_t res, uint32_t flags);
  static void on_msg_ring_arrived(Completion* c, int32_t res, uint32_t flags);
  void arm_eventfd();
  void handle_wake();

  io_uring ring_{};
  std::string setup_mode_;
  int event_fd_ = -1;
  uint64_t event_buf_ = 0;
  Completion eventfd_completion_;
  Completion msg_arrived_completion_;  // user_data posted into THIS ring by MSG_RING
  Completion msg_sent_completion_;     // the sender-side CQE of a MSG_RING we issued
  std::atomic<bool> wake_pending_{false};
  std::atomic<bool> msg_ring_works_{true};
  std::atomic<bool> stop_{false};
  std::function<void()> on_wake_;
  std::function<void()> on_turn_end_;
  uint64_t turns_ = 0;
};

// A provided-buffer ring (IORING_REGISTER_PBUF_RING) for multishot recv: the kernel
// picks a buffer per completion; the caller hands it back with recycle() once parsed.
class BufferRing {
 public:
  BufferRing(Loop& loop, uint16_t group_id, unsigned count, unsigned buf_size);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  uint16_t group_id() const { return group_id_; }
  unsigned buf_size() const { return buf_size_; }
  char* buffer(uint16_t bid) { return data_ + static_cast<size_t>(bid) * buf_size_; }
  // Returns a buffer to the kernel. Cheap: batched into one tail update per call.
  void recycle(uint16_t bid);

 private:
  Loop& loop_;
  uint16_t group_id_;
  unsigned count_;
  unsigned buf_size_;
  io_uring_buf_ring* br_ = nullptr;
  size_t br_bytes_ = 0;
  char* data_ = nullptr;
};

// Socket helpers (blocking setup calls, not on the hot path).
// Parses "host:port", ":port" (every interface) or "port"; false on bad input.
bool parse_host_port(const std::string& s, std::string* host, uint16_t* port);
// A listening TCP socket with SO_REUSEPORT (so every shard can accept on the same port).
// Returns the fd, or -errno with *err set.
int listen_tcp(const std::string& host, uint16_t port, bool reuseport, std::string* err);
uint16_t local_port(int fd);
// True if the peer of connected socket `fd` is a loopback address (127.0.0.0/8, ::1, or
// ::ffff:127.0.0.0/104); false for anything else, or when it cannot be asked.
bool peer_is_loopback(int fd);
// True if a TCP connect to host:port (an empty host: 127.0.0.1) succeeds right now.
bool something_listens(const std::string& host, uint16_t port);

}  // namespace ticketd::io
