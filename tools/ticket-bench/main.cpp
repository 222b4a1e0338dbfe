// ticket-bench: a RESP load generator that measures the server, not itself. A few threads
// each drive many non-blocking connections (epoll), closed loop or open loop at a fixed
// rate, and every reply is checked (tickets unique, increasing per connection). It always
// stops by itself: by request count, by duration, or by the hard timeout.
// With --etcd it speaks HTTP/1.1 instead: keep-alive POSTs of a put to etcd's v3 JSON
// gateway, one request in flight per connection, and checks the revision of every reply
// the same way (tools/compare --etcd: the peer people would pick instead).

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "latency_histogram.h"
#include "load_driver.h"

namespace {

using ticketd::bench::BenchPlan;
using ticketd::bench::ConnectTarget;
using ticketd::bench::DriverResult;
using ticketd::bench::LatencyHistogram;
using ticketd::bench::LoadDriver;
using ticketd::bench::NowNs;

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr int kExitViolation = 3;
constexpr int kExitTimeout = 4;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_interrupted{false};

void OnSignal(int) {
  g_interrupted.store(true);
  g_stop.store(true);
}

// Splits a command line into words; double quotes group words ("SET k \"a b\"").
bool SplitCommand(const std::string& line, std::vector<std::string>& words) {
  std::string word;
  bool in_word = false;
  bool quoted = false;
  for (char ch : line) {
    if (quoted) {
      if (ch == '"') {
        quoted = false;
      } else {
        word += ch;
      }
    } else if (ch == '"') {
      quoted = true;
      in_word = true;
    } else if (ch == ' ' || ch == '\t') {
      if (in_word) words.push_back(word);
      word.clear();
      in_word = false;
    } else {
      word += ch;
      in_word = true;
    }
  }
  if (quoted) return false;
  if (in_word) words.push_back(word);
  return !words.empty();
}

std::string EncodeCommand(const std::vector<std::string>& words) {
  std::string out = "*" + std::to_string(words.size()) + "\r\n";
  for (const std::string& w : words) {
    out += "$" + std::to_string(w.size()) + "\r\n" + w + "\r\n";
  }
  return out;
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", ch);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out;
}

std::string Base64(const std::string& in) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                 static_cast<uint8_t>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// etcd's v3 gateway: POST <prefix>kv/put with {"key": base64, "value": base64}; the reply's
// header.revision is the store's revision after the put: unique and increasing.
std::string EtcdPutRequest(const std::string& host, int port, const std::string& prefix,
                           const std::string& key, const std::string& value) {
  std::string body = "{\"key\":\"" + Base64(key) + "\",\"value\":\"" + Base64(value) + "\"}";
  return "POST " + prefix + "kv/put HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

// Checks the histogram against exact percentiles of random data (used by the tests).
int SelfTest() {
  std::mt19937_64 rng(7);
  LatencyHistogram a, b;
  std::vector<uint64_t> values;
  for (int i = 0; i < 200000; ++i) {
    // Log-uniform from 1 ns to ~10 s, like real latency tails.
    uint64_t v = static_cast<uint64_t>(std::exp2(std::uniform_real_distribution<double>(0, 33)(rng)));
    values.push_back(v);
    (i % 2 ? a : b).Record(v);
  }
  a.Merge(b);
  std::sort(values.begin(), values.end());
  int failures = 0;
  for (double p : {1.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
    size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * values.size()));
    uint64_t exact = values[std::max<size_t>(rank, 1) - 1];
    uint64_t got = a.Percentile(p);
    double rel = exact ? (static_cast<double>(got) - exact) / exact : 0;
    bool ok = got >= exact && rel <= 0.01;
    std::printf("self-test: p%-5g exact %llu histogram %llu (%+.3f%%) %s\n", p,
                static_cast<unsigned long long>(exact), static_cast<unsigned long long>(got),
                rel * 100, ok ? "ok" : "FAIL");
    failures += ok ? 0 : 1;
  }
  if (a.Count() != values.size() || a.Max() != values.back() || a.Min() != values.front()) {
    std::printf("self-test: count/min/max FAIL\n");
    failures++;
  }
  for (uint64_t v : {0ull, 1ull, 255ull, 256ull, 257ull, 1000ull, 123456789ull, 1ull << 46}) {
    size_t idx = LatencyHistogram::IndexOf(v);
    uint64_t hi = LatencyHistogram::UpperBound(idx);
    uint64_t lo = idx == 0 ? 0 : LatencyHistogram::UpperBound(idx - 1) + 1;
    if (v < lo || v > hi) {
      std::printf("self-test: bucket of %llu is [%llu, %llu] FAIL\n",
                  static_cast<unsigned long long>(v), static_cast<unsigned long long>(lo),
                  static_cast<unsigned long long>(hi));
      failures++;
    }
  }
  std::printf("self-test: %s\n", failures ? "FAILED" : "passed");
  return failures ? 1 : 0;
}

double Us(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ticket-bench: RESP load generator and ticket checker.\n"
      "Exit status: 0 ok, 1 connection/protocol failure, 2 bad flags, 3 check violation\n"
      "(duplicate or decreasing ticket), 4 interrupted or hard timeout."};
  app.set_help_flag("--help", "Print this help and exit");
  std::string host = "127.0.0.1";
  int port = 11001;
  int connections = 50;
  int pipeline = 1;
  int threads = 1;
  uint64_t requests = 0;
  double duration = 0;
  double warmup = 0;
  double rate = 0;
  double timeout = 0;
  std::string command = "TICKET";
  bool check_on = false;
  bool check_off = false;
  std::string json_path;
  bool quiet = false;
  bool self_test = false;
  bool etcd = false;
  std::string etcd_prefix = "/v3/";
  std::string etcd_key = "ticket-bench";
  std::string password, user;
  app.add_option("-h,--host", host, "Server host")->capture_default_str();
  app.add_option("-a,--pass", password,
                 "Password: every connection sends AUTH first (also TICKETD_PASSWORD)");
  app.add_option("--user", user, "User name for AUTH (default: the default user)");
  app.add_option("-p,--port", port, "Server port")->capture_default_str()->check(CLI::Range(1, 65535));
  app.add_option("-c,--connections", connections, "Connections in total")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("-P,--pipeline", pipeline, "Requests in flight per connection")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("-t,--threads", threads, "Client threads (each drives its share of connections)")
      ->capture_default_str()->check(CLI::Range(1, 256));
  auto* n_opt = app.add_option("-n,--requests", requests,
                               "Measured requests in total (default 100000 unless -d)")
                    ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));
  auto* d_opt = app.add_option("-d,--duration", duration, "Measure for this many seconds")
                    ->check(CLI::Range(0.001, 86400.0));
  n_opt->excludes(d_opt);
  app.add_option("--warmup", warmup, "Seconds of unmeasured load before measuring")
      ->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  app.add_option("--rate", rate,
                 "Open loop: send at this fixed total rate (req/s); latency counts from the "
                 "intended send time. Default: closed loop")
      ->check(CLI::Range(1.0, 1e9));
  app.add_option("--command", command, "Command to send, with arguments (e.g. \"INCR key\")")
      ->capture_default_str();
  app.add_flag("--check", check_on,
               "Check replies: integers, unique, increasing per connection (default for TICKET)");
  app.add_flag("--no-check", check_off, "Do not check replies");
  app.add_option("--json", json_path, "Write the results as JSON to this file");
  app.add_option("--timeout", timeout,
                 "Hard limit in seconds for the whole run (default: duration+warmup+30, or 600)")
      ->check(CLI::Range(0.1, 86400.0));
  app.add_flag("--etcd", etcd,
               "Speak HTTP/1.1 to etcd's v3 JSON gateway instead of RESP: keep-alive POST "
               "PREFIXkv/put of one key; the reply's header revision is checked like a ticket. "
               "Pipeline 1 only; no AUTH");
  app.add_option("--etcd-prefix", etcd_prefix, "--etcd: the gateway's path prefix (etcd 3.4: /v3/)")
      ->capture_default_str();
  app.add_option("--etcd-key", etcd_key, "--etcd: the key every put writes")->capture_default_str();
  app.add_flag("-q,--quiet", quiet, "No progress line");
  app.add_flag("--self-test", self_test, "Check the latency histogram and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "ticket-bench: %s\nRun with --help for the list of flags.\n", e.what());
    return kExitUsage;
  }
  if (self_test) return SelfTest();

  std::vector<std::string> words;
  if (!SplitCommand(command, words)) {
    std::fprintf(stderr, "ticket-bench: --command must name a command (quotes balanced): '%s'\n",
                 command.c_str());
    return kExitUsage;
  }
  if (check_on && check_off) {
    std::fprintf(stderr, "ticket-bench: --check and --no-check exclude each other\n");
    return kExitUsage;
  }
  std::string upper = words[0];
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  const bool check = check_on || (!check_off && (upper == "TICKET" || etcd));
  if (etcd) {
    if (pipeline != 1) {
      std::fprintf(stderr, "ticket-bench: --etcd sends one request at a time per connection "
                           "(HTTP/1.1 without pipelining): -P must be 1\n");
      return kExitUsage;
    }
    if (etcd_prefix.empty() || etcd_prefix.front() != '/' || etcd_prefix.back() != '/' ||
        etcd_prefix.find_first_of(" \r\n") != std::string::npos) {
      std::fprintf(stderr, "ticket-bench: --etcd-prefix must start and end with '/': '%s'\n",
                   etcd_prefix.c_str());
      return kExitUsage;
    }
    command = "etcd POST " + etcd_prefix + "kv/put";
  }
  if (threads > connections) {
    std::fprintf(stderr, "ticket-bench: -t %d is more than -c %d: every thread needs a connection\n",
                 threads, connections);
    return kExitUsage;
  }
  const bool by_duration = d_opt->count() > 0;
  if (!by_duration && n_opt->count() == 0) requests = 100000;
  if (timeout == 0) timeout = by_duration ? duration + warmup + 30 : 600 + warmup;

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);

  // Connect everything first, so a refused connection fails before any load starts.
  if (password.empty() && !etcd) {
    if (const char* e = std::getenv("TICKETD_PASSWORD"); e != nullptr) password = e;
  }
  ConnectTarget target{host, static_cast<uint16_t>(port), {}};
  if (!password.empty() && etcd) {
    std::fprintf(stderr, "ticket-bench: --etcd logs in to nothing: no -a/--pass\n");
    return kExitUsage;
  }
  if (!password.empty()) {
    target.login = EncodeCommand(user.empty() ? std::vector<std::string>{"AUTH", password}
                                              : std::vector<std::string>{"AUTH", user, password});
  }
  std::vector<std::vector<int>> fds(static_cast<size_t>(threads));
  for (int i = 0; i < connections; ++i) {
    std::string error;
    int fd = ticketd::bench::ConnectTcp(target, 3000, error);
    if (fd < 0) {
      std::fprintf(stderr, "ticket-bench: %s (connection %d of %d)\n", error.c_str(), i + 1,
                   connections);
      for (auto& v : fds) {
        for (int f : v) close(f);
      }
      return kExitRuntime;
    }
    fds[static_cast<size_t>(i % threads)].push_back(fd);
  }

  const int64_t start = NowNs() + 1'000'000;  // a millisecond for the threads to start
  const int64_t measure_start = start + static_cast<int64_t>(warmup * 1e9);
  const int64_t hard_deadline = NowNs() + static_cast<int64_t>(timeout * 1e9);
  std::vector<std::unique_ptr<LoadDriver>> drivers;
  for (int t = 0; t < threads; ++t) {
    BenchPlan plan;
    plan.request = etcd ? EtcdPutRequest(host, port, etcd_prefix, etcd_key, "x")
                        : EncodeCommand(words);
    plan.http = etcd;
    plan.pipeline = pipeline;
    plan.check = check;
    plan.rate_per_thread = rate / threads;
    plan.start_ns = start;
    plan.measure_start_ns = measure_start;
    if (by_duration) {
      plan.send_end_ns = measure_start + static_cast<int64_t>(duration * 1e9);
      plan.budget = UINT64_MAX;
      // Replies still missing 5 s after the last send are reported as unanswered.
      plan.drain_deadline_ns = std::min(hard_deadline, plan.send_end_ns + 5'000'000'000);
    } else {
      plan.send_end_ns = INT64_MAX;
      plan.budget = requests / threads + (static_cast<uint64_t>(t) < requests % threads ? 1 : 0);
      plan.drain_deadline_ns = hard_deadline;
    }
    drivers.push_back(std::make_unique<LoadDriver>(plan, fds[static_cast<size_t>(t)], target, g_stop));
  }
  std::vector<std::thread> workers;
  std::atomic<int> running{threads};
  for (auto& d : drivers) {
    workers.emplace_back([&d, &running] {
      d->Run();
      running.fetch_sub(1);
    });
  }

  // Progress once a second; the main thread also enforces the hard timeout.
  bool timed_out = false;
  uint64_t last_replies = 0;
  int64_t last_tick = NowNs();
  int seconds = 0;
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    int64_t now = NowNs();
    if (now >= hard_deadline && !g_stop.load()) {
      timed_out = true;
      g_stop.store(true);
    }
    if (now - last_tick >= 1'000'000'000) {
      uint64_t replies = 0;
      for (auto& d : drivers) replies += d->Progress();
      ++seconds;
      if (!quiet) {
        double rps = (replies - last_replies) * 1e9 / static_cast<double>(now - last_tick);
        std::fprintf(stderr, "[%4ds] %10.0f req/s  %12llu replies%s\n", seconds, rps,
                     static_cast<unsigned long long>(replies),
                     now < measure_start ? "  (warm-up)" : "");
      }
      last_replies = replies;
      last_tick = now;
    }
  }
  for (auto& w : workers) w.join();

  // Merge what the threads saw.
  DriverResult total;
  for (auto& d : drivers) {
    DriverResult& r = d->Result();
    total.latency.Merge(r.latency);
    total.measured += r.measured;
    total.replies += r.replies;
    total.error_replies += r.error_replies;
    total.moved += r.moved;
    total.violations += r.violations;
    total.connection_failures += r.connection_failures;
    total.unanswered += r.unanswered;
    total.last_reply_ns = std::max(total.last_reply_ns, r.last_reply_ns);
    if (total.first_error.empty()) total.first_error = r.first_error;
    if (total.first_violation.empty()) total.first_violation = r.first_violation;
    if (total.first_failure.empty()) total.first_failure = r.first_failure;
    total.tickets.insert(total.tickets.end(), r.tickets.begin(), r.tickets.end());
    std::vector<int64_t>().swap(r.tickets);
  }
  uint64_t duplicates = 0;
  if (check) {
    std::sort(total.tickets.begin(), total.tickets.end());
    for (size_t i = 1; i < total.tickets.size(); ++i) {
      if (total.tickets[i] == total.tickets[i - 1]) {
        if (duplicates == 0) {
          std::string what = "ticket " + std::to_string(total.tickets[i]) + " was handed out twice";
          if (total.first_violation.empty()) total.first_violation = what;
        }
        duplicates++;
      }
    }
    total.violations += duplicates;
  }

  const double seconds_measured =
      total.last_reply_ns > measure_start ? (total.last_reply_ns - measure_start) / 1e9 : 0.0;
  const double throughput = seconds_measured > 0 ? total.measured / seconds_measured : 0.0;
  const LatencyHistogram& h = total.latency;
  const char* mode = rate > 0 ? "open loop" : "closed loop";

  std::printf("ticket-bench: %s to %s:%d, %d connections, pipeline %d, %d thread%s, %s",
              command.c_str(), host.c_str(), port, connections, pipeline, threads,
              threads == 1 ? "" : "s", mode);
  if (rate > 0) std::printf(" at %.0f req/s", rate);
  std::printf("\n");
  std::printf("requests:   %llu measured in %.3f s = %.0f req/s (%llu replies in all)\n",
              static_cast<unsigned long long>(total.measured), seconds_measured, throughput,
              static_cast<unsigned long long>(total.replies));
  std::printf("latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
              Us(h.Percentile(50)), Us(h.Percentile(90)), Us(h.Percentile(99)),
              Us(h.Percentile(99.9)), Us(h.Max()), h.Mean() / 1000.0);
  std::printf("errors:     %llu error replies%s%s, %llu redirects followed, %llu connection failures%s%s, %llu unanswered\n",
              static_cast<unsigned long long>(total.error_replies),
              total.first_error.empty() ? "" : " (first: ", total.first_error.empty() ? "" : (total.first_error + ")").c_str(),
              static_cast<unsigned long long>(total.moved),
              static_cast<unsigned long long>(total.connection_failures),
              total.first_failure.empty() ? "" : " (first: ",
              total.first_failure.empty() ? "" : (total.first_failure + ")").c_str(),
              static_cast<unsigned long long>(total.unanswered));
  if (check) {
    if (total.violations == 0) {
      std::printf("check:      ok: %zu tickets, all unique, increasing on every connection\n",
                  total.tickets.size());
    } else {
      std::printf("check:      VIOLATION: %llu problems (%llu duplicates); first: %s\n",
                  static_cast<unsigned long long>(total.violations),
                  static_cast<unsigned long long>(duplicates), total.first_violation.c_str());
    }
  } else {
    std::printf("check:      off\n");
  }
  if (timed_out) std::printf("stopped:    hard timeout of %.1f s reached\n", timeout);
  if (g_interrupted.load()) std::printf("stopped:    interrupted\n");

  if (!json_path.empty()) {
    std::ostringstream js;
    js.setf(std::ios::fixed);
    js.precision(3);
    js << "{\n  \"config\": {\"host\": \"" << JsonEscape(host) << "\", \"port\": " << port
       << ", \"connections\": " << connections << ", \"pipeline\": " << pipeline
       << ", \"threads\": " << threads << ", \"command\": \"" << JsonEscape(command)
       << "\", \"mode\": \"" << (rate > 0 ? "open" : "closed") << "\", \"rate\": " << rate
       << ", \"requests\": " << (by_duration ? 0 : requests)
       << ", \"duration_s\": " << (by_duration ? duration : 0) << ", \"warmup_s\": " << warmup
       << ", \"check\": " << (check ? "true" : "false") << "},\n";
    js << "  \"requests\": " << total.measured << ",\n  \"replies\": " << total.replies
       << ",\n  \"seconds\": " << seconds_measured << ",\n  \"throughput_rps\": " << throughput
       << ",\n  \"latency_us\": {\"p50\": " << Us(h.Percentile(50))
       << ", \"p90\": " << Us(h.Percentile(90)) << ", \"p99\": " << Us(h.Percentile(99))
       << ", \"p99_9\": " << Us(h.Percentile(99.9)) << ", \"max\": " << Us(h.Max())
       << ", \"mean\": " << h.Mean() / 1000.0 << ", \"min\": " << Us(h.Min()) << "},\n"
       << "  \"errors\": " << total.error_replies << ",\n  \"first_error\": \""
       << JsonEscape(total.first_error) << "\",\n  \"moved\": " << total.moved
       << ",\n  \"connection_failures\": " << total.connection_failures
       << ",\n  \"first_failure\": \"" << JsonEscape(total.first_failure)
       << "\",\n  \"unanswered\": " << total.unanswered
       << ",\n  \"violations\": " << total.violations << ",\n  \"first_violation\": \""
       << JsonEscape(total.first_violation) << "\",\n  \"timed_out\": "
       << (timed_out ? "true" : "false") << ",\n  \"interrupted\": "
       << (g_interrupted.load() ? "true" : "false") << "\n}\n";
    std::ofstream out(json_path);
    out << js.str();
    if (!out) {
      std::fprintf(stderr, "ticket-bench: cannot write %s\n", json_path.c_str());
      return kExitRuntime;
    }
  }

  if (total.violations > 0) return kExitViolation;
  if (timed_out || g_interrupted.load()) return kExitTimeout;
  if (total.connection_failures > 0 || total.unanswered > 0) return kExitRuntime;
  return kExitOk;
}
