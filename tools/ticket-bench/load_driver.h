// LoadDriver: one benchmark thread. It drives its share of non-blocking connections with
// one epoll set, keeps up to `pipeline` requests in flight per connection (closed loop) or
// sends on a fixed schedule (open loop), and checks every reply it reads. It never sends
// past its request budget or its deadline, and never blocks except in epoll_wait and in
// the short bounded connect that follows a -MOVED redirect.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "latency_histogram.h"
#include "ticketd/resp/reply_reader.h"

namespace ticketd::bench {

int64_t NowNs();

struct BenchPlan {
  std::string request;            // one encoded request (RESP array)
  int pipeline = 1;               // max requests in flight per connection
  bool check = false;             // every reply must be an increasing integer
  double rate_per_thread = 0;     // open loop: requests/s for this thread; 0 = closed loop
  int64_t start_ns = 0;           // when sending starts (warm-up begins)
  int64_t measure_start_ns = 0;   // requests sent from here on are measured
  int64_t send_end_ns = 0;        // no request is sent after this (duration mode), or INT64_MAX
  int64_t drain_deadline_ns = 0;  // give up on outstanding replies after this
  uint64_t budget = 0;            // measured requests to send (count mode), or UINT64_MAX
  // HTTP mode (--etcd): `request` is one HTTP/1.1 request and every reply an HTTP/1.1
  // response (Content-Length or chunked body). A 200 whose JSON body names
  // "revision":"N" counts as the integer N (etcd's put: the store's revision); any other
  // status is an error reply. No redirects, no pipelining (pipeline must be 1).
  bool http = false;
};

// One HTTP/1.1 response at the start of `in`, for HTTP mode (exposed for the tests of the
// parser's callers). kOk: `consumed` bytes are the response, `code` its status and `body`
// its body (decoded into `storage` when chunked). kNeedMore: `needed` bytes at least.
struct HttpResponse {
  resp::ReplyStatus status = resp::ReplyStatus::kNeedMore;
  size_t consumed = 0;
  size_t needed = 0;
  int code = 0;
  std::string_view body;
  std::string error;
};
HttpResponse ParseHttpResponse(std::string_view in, std::string& storage);

struct DriverResult {
  LatencyHistogram latency;
  uint64_t measured = 0;           // measured requests answered
  uint64_t replies = 0;            // all replies, warm-up included
  uint64_t error_replies = 0;      // -ERR etc. (MOVED excluded)
  uint64_t moved = 0;              // -MOVED redirects followed
  uint64_t violations = 0;         // check failures
  uint64_t connection_failures = 0;
  uint64_t unanswered = 0;         // requests in flight when the driver stopped
  int64_t last_reply_ns = 0;       // time of the last measured reply
  std::string first_error;
  std::string first_violation;
  std::string first_failure;
  std::vector<int64_t> tickets;    // every checked value, for the global uniqueness check
};

struct ConnectTarget {
  std::string host;
  uint16_t port = 0;
  std::string login;  // an encoded AUTH request sent first on every connection, or empty
};

// Connects a non-blocking TCP socket with TCP_NODELAY within `timeout_ms` and, with a
// login, sends it and waits for its +OK; returns the fd, or -1 with a message in `error`.
int ConnectTcp(const ConnectTarget& target, int timeout_ms, std::string& error);

class LoadDriver {
 public:
  // Takes ownership of the already connected sockets in `fds`.
  LoadDriver(const BenchPlan& plan, const std::vector<int>& fds, const ConnectTarget& target,
             const std::atomic<bool>& stop);
  ~LoadDriver();
  LoadDriver(const LoadDriver&) = delete;
  LoadDriver& operator=(const LoadDriver&) = delete;

  void Run();
  DriverResult& Result() { return result_; }
  // Replies seen so far; read by the progress printer from another thread.
  uint64_t Progress() const { return progress_.load(std::memory_order_relaxed); }

 private:
  struct Connection;

  void QueueRequests(Connection& c, int64_t now);
  bool Flush(Connection& c);
  void OnReadable(Connection& c, int64_t now);
  bool HandleReply(Connection& c, const resp::Reply& reply, int64_t now);
  bool ParseReplies(Connection& c, int64_t now);      // RESP replies in c.in
  bool ParseHttpReplies(Connection& c, int64_t now);  // HTTP responses in c.in
  void Redirect(Connection& c, std::string_view moved_text);
  void Fail(Connection& c, const std::string& why);
  void SetWriteInterest(Connection& c, bool want);
  bool Finished(int64_t now) const;
  int64_t NextDueNs() const;

  BenchPlan plan_;
  ConnectTarget target_;
  const std::atomic<bool>& stop_;
  int epoll_fd_ = -1;
  std::vector<Connection*> conns_;
  std::string out_pattern_;       // the request repeated pipeline+1 times
  resp::ReplyReader reader_;
  std::string http_body_;         // a chunked response's decoded body
  std::string http_text_;         // the text of an HTTP error reply
  uint64_t budget_left_ = 0;
  DriverResult result_;
  std::atomic<uint64_t> progress_{0};
};

}  // namespace ticketd::bench
