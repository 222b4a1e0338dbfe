// base/log: the one logging facility of the process. Every line goes to stderr as
//   2025-06-01T10:00:00.123Z ticketd[<node id>] <marker> <message>
// (UTC, milliseconds; markers as Redis's: '.' debug, '-' verbose, '*' notice, '#' warning).
// When stderr is the systemd journal (JOURNAL_STREAM names it) each line also starts with
// its syslog priority (<7>..<4>), which journald strips and files (journalctl -p works).
// Promises: one write per line, lines of several threads never interleave, the level is
// an atomic read (cheap to test on any path). Never: knows what a message means; callers
// never pass a secret (passwords, the cluster secret, digests).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ticketd::logging {

enum class Level : uint8_t { kDebug = 0, kVerbose = 1, kNotice = 2, kWarning = 3 };

// Redis's names: debug, verbose, notice, warning (case-insensitive).
bool parse_level(std::string_view name, Level* out);
const char* level_name(Level l);
char level_marker(Level l);

// The process-wide threshold (default notice): lines below it are dropped.
void set_level(Level l);
Level level();
inline bool enabled(Level l) { return static_cast<uint8_t>(l) >= static_cast<uint8_t>(level()); }

// One line (a trailing newline is added; newlines inside `msg` become spaces, so one call
// is always one line). node_id 0: not known yet (said as ticketd[-]).
void write(Level l, uint64_t node_id, std::string_view msg);

// The line write() would print at wall-clock time `unix_ms`, without the journal prefix
// and the newline (tests).
std::string format_line(uint64_t unix_ms, uint64_t node_id, Level l, std::string_view msg);

}  // namespace ticketd::logging
