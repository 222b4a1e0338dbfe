#include "sequence_commands.h"

#include <limits>

#include "shard.h"
#include "ticketd/resp/parser.h"
#include "ticketd/resp/writer.h"
#include "ticketd/tickets/state_machine.h"

namespace ticketd::server::sequences {

namespace {

void wrong_args(std::string& out, const char* cmd) {
  std::string msg = "ERR wrong number of arguments for '";
  msg += cmd;
  msg += "' command";
  resp::append_error(out, msg);
}

// The sequence name argument: true if it may name a sequence, else the error is sent.
bool check_name(std::string& out, std::string_view name) {
  if (tickets::name_ok(name)) return true;
  resp::append_error(out, "ERR " + tickets::check_name(name));
  return false;
}

constexpr int64_t kMaxValue = std::numeric_limits<int64_t>::max();

// An integer argument in [lo, kMaxValue]; otherwise the error is sent. Values past 2^63-1
// are refused as Redis refuses them (clients read integer replies as signed 64-bit).
bool integer_arg(std::string& out, std::string_view arg, int64_t lo, const char* what,
                 uint64_t* v) {
  int64_t x = 0;
  if (!parse_i64(arg, &x)) {
    resp::append_error(out, "ERR value is not an integer or out of range");
    return false;
  }
  if (x < lo) {
    resp::append_error(out, std::string("ERR ") + what + " must be at least " +
                                std::to_string(lo));
    return false;
  }
  *v = static_cast<uint64_t>(x);
  return true;
}

}  // namespace

bool parse_i64(std::string_view s, int64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  bool neg = s[0] == '-';
  std::string_view d = neg ? s.substr(1) : s;
  if (d.empty() || (d[0] == '0' && (d.size() > 1 || neg))) return false;
  uint64_t x = 0;
  for (char ch : d) {
    if (ch < '0' || ch > '9') return false;
    uint64_t digit = static_cast<uint64_t>(ch - '0');
    if (x > (std::numeric_limits<uint64_t>::max() - digit) / 10) return false;
    x = x * 10 + digit;
  }
  uint64_t limit = neg ? uint64_t{1} << 63 : static_cast<uint64_t>(kMaxValue);
  if (x > limit) return false;
  *v = neg ? static_cast<int64_t>(0 - x) : static_cast<int64_t>(x);
  return true;
}

void cmd_ticket(Shard& s, Connection* c, Args args, std::string& out) {
  // Plain TICKET (one argument) never gets here: Shard::run_commands takes it on its fast path.
  if (args.size() != 2) {
    wrong_args(out, "ticket");
    return;
  }
  if (!check_name(out, args[1])) return;
  s.queue_sequence_request(c, args[1], 1, false);
}

void cmd_block(Shard& s, Connection* c, Args args, std::string& out) {
  uint64_t n = 0;
  if (!check_name(out, args[1])) return;
  if (!integer_arg(out, args[2], 1, "count", &n)) return;
  if (n > tickets::kMaxBlock) {
    resp::append_error(out, "ERR count must be at most " + std::to_string(tickets::kMaxBlock));
    return;
  }
  s.queue_sequence_request(c, args[1], n, true);
}

void cmd_create(Shard& s, Connection* c, Args args, std::string& out) {
  // TICKET.CREATE name [START n] [MODE dense|window] [WINDOW size], options in any order,
  // each at most once; WINDOW only with MODE window.
  if (args.size() < 2 || args.size() % 2 != 0) {
    resp::append_error(out, "ERR syntax error");
    return;
  }
  if (!check_name(out, args[1])) return;
  bool start_seen = false, mode_seen = false, window_seen = false, window_mode = false;
  for (size_t i = 2; i + 1 < args.size(); i += 2) {
    uint64_t v = 0;
    if (resp::iequals(args[i], "START") && !start_seen) {
      start_seen = true;
      if (!integer_arg(out, args[i + 1], 1, "START", &v)) return;
    } else if (resp::iequals(args[i], "MODE") && !mode_seen) {
      mode_seen = true;
      if (resp::iequals(args[i + 1], "window")) {
        window_mode = true;
      } else if (!resp::iequals(args[i + 1], "dense")) {
        resp::append_error(out, "ERR MODE must be dense or window");
        return;
      }
    } else if (resp::iequals(args[i], "WINDOW") && !window_seen) {
      window_seen = true;
      if (!integer_arg(out, args[i + 1], 1, "WINDOW", &v)) return;
      if (v > tickets::kMaxWindow) {
        resp::append_error(out, "ERR WINDOW must be at most " + std::to_string(tickets::kMaxWindow));
        return;
      }
    } else {
      resp::append_error(out, "ERR syntax error");
      return;
    }
  }
  if (window_seen && !window_mode) {
    resp::append_error(out, "ERR WINDOW needs MODE window");
    return;
  }
  s.submit_admin(c, args);  // shard 0 proposes it and answers once it is applied
}

void cmd_floor(Shard& s, Connection* c, Args args, std::string& out) {
  uint64_t v = 0;
  if (!check_name(out, args[1])) return;
  if (!integer_arg(out, args[2], 0, "the floor", &v)) return;
  s.submit_admin(c, args);
}

void cmd_drop(Shard& s, Connection* c, Args args, std::string& out) {
  if (!check_name(out, args[1])) return;
  if (args[1] == tickets::kDefaultSequence) {
    resp::append_error(out, "ERR the default sequence cannot be dropped");
    return;
  }
  s.submit_admin(c, args);
}

void cmd_list(Shard& s, Connection* c, Args args, std::string&) { s.submit_admin(c, args); }

void cmd_info(Shard& s, Connection* c, Args args, std::string& out) {
  if (!check_name(out, args[1])) return;
  s.submit_admin(c, args);
}

void cmd_last(Shard& s, Connection* c, Args args, std::string& out) {
  if (args.size() > 2) {
    wrong_args(out, "ticket.last");
    return;
  }
  if (args.size() == 2 && !check_name(out, args[1])) return;
  // A linearizable read (ReadIndex) on the leader; followers redirect.
  s.submit_admin(c, args);
}

// ------------------------------------------------------------------------------------------
// COMMAND DOCS (Redis 7's shape: summary, since, group, complexity, arguments).

namespace {

struct ArgDoc {
  const char* name;
  const char* type;   // key, integer, pure-token, block
  const char* token;  // or nullptr
  bool optional;
  const ArgDoc* sub = nullptr;  // a block's arguments
  size_t nsub = 0;
};

struct CommandDoc {
  const char* name;
  const char* summary;
  const char* complexity;
  const ArgDoc* args;
  size_t nargs;
};

constexpr ArgDoc kName[] = {{"name", "key", nullptr, false}};
constexpr ArgDoc kOptionalName[] = {{"name", "key", nullptr, true}};
constexpr ArgDoc kBlock[] = {{"name", "key", nullptr, false}, {"count", "integer", nullptr, false}};
constexpr ArgDoc kFloor[] = {{"name", "key", nullptr, false}, {"value", "integer", nullptr, false}};
constexpr ArgDoc kStart[] = {{"start", "integer", "START", false}};
constexpr ArgDoc kMode[] = {{"mode", "string", "MODE", false}};
constexpr ArgDoc kWindow[] = {{"window", "integer", "WINDOW", false}};
constexpr ArgDoc kCreate[] = {{"name", "key", nullptr, false},
                              {"start", "block", nullptr, true, kStart, 1},
                              {"mode", "block", nullptr, true, kMode, 1},
                              {"window", "block", nullptr, true, kWindow, 1}};

constexpr ArgDoc kClusterArgs[] = {{"subcommand", "string", nullptr, false},
                                   {"argument", "string", nullptr, true}};

constexpr CommandDoc kDocs[] = {
    {"ticket", "Returns the next ticket of a sequence (the default sequence without a name).",
     "O(1)", kOptionalName, 1},
    {"ticket.block", "Returns `count` consecutive tickets of a sequence as [first, last].", "O(1)",
     kBlock, 2},
    {"ticket.create", "Creates a sequence whose first ticket is START (default 1); MODE window "
     "hands tickets out from reserved windows of at least WINDOW (gaps, never repeats).",
     "O(log N)", kCreate, 4},
    {"ticket.floor", "Raises a sequence so every later ticket is greater than `value`.",
     "O(log N)", kFloor, 2},
    {"ticket.drop", "Deletes a sequence.", "O(log N)", kName, 1},
    {"ticket.list", "Lists the sequences.", "O(N)", nullptr, 0},
    {"ticket.info", "Returns a sequence's last ticket, tickets issued, creating log index, mode, "
     "window and reserved high mark.",
     "O(log N)", kName, 1},
    {"ticket.last", "Returns the last ticket of a sequence, read linearizably.", "O(1)",
     kOptionalName, 1},
    // Cluster clients (src/server/cluster_api.cpp).
    {"cluster", "Describes the cluster as one shard owning every slot (SLOTS, SHARDS, NODES, "
     "INFO, MYID, MYSHARDID, KEYSLOT, REPLICAS, HELP).", "O(N) where N is the number of members",
     kClusterArgs, 2},
    {"role", "Returns the replication role: master on the leader, slave on a follower.", "O(N)",
     nullptr, 0},
    {"readonly", "Accepted for cluster clients; every ticket command still goes to the leader.",
     "O(1)", nullptr, 0},
    {"readwrite", "Accepted for cluster clients; every ticket command still goes to the leader.",
     "O(1)", nullptr, 0},
};

void append_arg(std::string& out, const ArgDoc& a) {
  bool key = std::string_view(a.type) == "key";
  size_t fields = 2 + (key ? 1 : 0) + (a.token ? 1 : 0) + (a.optional ? 1 : 0) + (a.nsub ? 1 : 0);
  resp::append_array_header(out, 2 * fields);
  resp::append_bulk(out, "name");
  resp::append_bulk(out, a.name);
  resp::append_bulk(out, "type");
  resp::append_bulk(out, a.type);
  if (key) {
    resp::append_bulk(out, "key_spec_index");
    resp::append_integer(out, 0);
  }
  if (a.token) {
    resp::append_bulk(out, "token");
    resp::append_bulk(out, a.token);
  }
  if (a.optional) {
    resp::append_bulk(out, "flags");
    resp::append_array_header(out, 1);
    resp::append_simple(out, "optional");
  }
  if (a.nsub) {
    resp::append_bulk(out, "arguments");
    resp::append_array_header(out, a.nsub);
    for (size_t i = 0; i < a.nsub; ++i) append_arg(out, a.sub[i]);
  }
}

}  // namespace

size_t docs_count() { return std::size(kDocs); }

std::string_view docs_name(size_t i) { return kDocs[i].name; }

bool append_docs(std::string& out, std::string_view name) {
  for (const CommandDoc& d : kDocs) {
    if (!resp::iequals(name, d.name)) continue;
    resp::append_bulk(out, d.name);
    resp::append_array_header(out, d.nargs ? 10 : 8);
    resp::append_bulk(out, "summary");
    resp::append_bulk(out, d.summary);
    resp::append_bulk(out, "since");
    resp::append_bulk(out, "0.2.0");
    resp::append_bulk(out, "group");
    resp::append_bulk(out, "generic");
    resp::append_bulk(out, "complexity");
    resp::append_bulk(out, d.complexity);
    if (d.nargs) {
      resp::append_bulk(out, "arguments");
      resp::append_array_header(out, d.nargs);
      for (size_t i = 0; i < d.nargs; ++i) append_arg(out, d.args[i]);
    }
    return true;
  }
  return false;
}

}  // namespace ticketd::server::sequences
