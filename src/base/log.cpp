#include "ticketd/base/log.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace ticketd::logging {

namespace {

std::atomic<uint8_t> g_level{static_cast<uint8_t>(Level::kNotice)};
std::mutex g_write_mu;  // one line at a time (a line is one write, but keep them whole)

// Is stderr the journal? systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it
// connected; only then does a <N> prefix mean a priority rather than text.
bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st{};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

int syslog_priority(Level l) {
  switch (l) {
    case Level::kDebug: return 7;    // LOG_DEBUG
    case Level::kVerbose: return 6;  // LOG_INFO
    case Level::kNotice: return 5;   // LOG_NOTICE
    case Level::kWarning: return 4;  // LOG_WARNING
  }
  return 5;
}

uint64_t wall_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

}  // namespace

bool parse_level(std::string_view name, Level* out) {
  static constexpr std::pair<std::string_view, Level> kNames[] = {
      {"debug", Level::kDebug},
      {"verbose", Level::kVerbose},
      {"notice", Level::kNotice},
      {"warning", Level::kWarning},
  };
  for (const auto& [n, l] : kNames) {
    if (n.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < n.size() && same; ++i) {
      same = n[i] == std::tolower(static_cast<unsigned char>(name[i]));
    }
    if (same) {
      *out = l;
      return true;
    }
  }
  return false;
}

const char* level_name(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kVerbose: return "verbose";
    case Level::kNotice: return "notice";
    case Level::kWarning: return "warning";
  }
  return "notice";
}

char level_marker(Level l) {
  switch (l) {
    case Level::kDebug: return '.';
    case Level::kVerbose: return '-';
    case Level::kNotice: return '*';
    case Level::kWarning: return '#';
  }
  return '*';
}

void set_level(Level l) { g_level.store(static_cast<uint8_t>(l), std::memory_order_relaxed); }

Level level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

std::string format_line(uint64_t unix_ms, uint64_t node_id, Level l, std::string_view msg) {
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  tm t{};
  ::gmtime_r(&secs, &t);
  char head[96];
  char id[24];
  if (node_id == 0) {
    std::snprintf(id, sizeof(id), "-");
  } else {
    std::snprintf(id, sizeof(id), "%llu", static_cast<unsigned long long>(node_id));
  }
  int n = std::snprintf(head, sizeof(head), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ ticketd[%s] %c ",
                        t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                        static_cast<unsigned>(unix_ms % 1000), id, level_marker(l));
  std::string line(head, n > 0 ? static_cast<size_t>(n) : 0);
  line.reserve(line.size() + msg.size());
  for (char ch : msg) line.push_back(ch == '\n' || ch == '\r' ? ' ' : ch);
  return line;
}

void write(Level l, uint64_t node_id, std::string_view msg) {
  if (!enabled(l)) return;
  static const bool journal = stderr_is_journal();
  std::string line;
  if (journal) {
    line = "<";
    line.push_back(static_cast<char>('0' + syslog_priority(l)));
    line.push_back('>');
  }
  line += format_line(wall_ms(), node_id, l, msg);
  line.push_back('\n');
  std::lock_guard<std::mutex> g(g_write_mu);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t w = ::write(STDERR_FILENO, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;  // nowhere to say it: drop the line
    p += w;
    left -= static_cast<size_t>(w);
  }
}

}  // namespace ticketd::logging
