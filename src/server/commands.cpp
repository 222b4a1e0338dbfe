#include "commands.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdarg>
#include <cstdio>

#include "client_auth.h"
#include "cluster_api.h"
#include "config_command.h"
#include "node.h"
#include "sequence_commands.h"
#include "tls_commands.h"
#include "ticketd/metrics/stats.h"
#include "ticketd/resp/parser.h"
#include "ticketd/resp/writer.h"

#ifndef TICKETD_VERSION
#define TICKETD_VERSION "0.1.0"
#endif

// Defined when mimalloc is linked in (it then also replaces malloc/free).
extern "C" int mi_version(void) __attribute__((weak));

namespace ticketd::server {

namespace {

using Args = std::span<const std::string_view>;
using Handler = void (*)(Shard& s, Connection* c, Args args, std::string& out);

struct CommandSpec {
  const char* name;  // lower case, as Redis reports it
  int arity;         // > 0: exactly; < 0: at least -arity (the name counts)
  const char* flags;
  Handler handler;
  // Key positions for cluster-aware clients (COMMAND): the sequence name is the key.
  int first_key = 0;
  int last_key = 0;
  int key_step = 0;
};

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& ch : r) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return r;
}

std::string upper(std::string_view s) {
  std::string r(s);
  for (char& ch : r) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return r;
}

}  // namespace

void unknown_subcommand(std::string& out, std::string_view cmd, std::string_view sub) {
  std::string msg = "ERR unknown subcommand '";
  msg.append(sub.substr(0, 128));
  msg += "'. Try ";
  msg += upper(cmd);
  msg += " HELP.";
  resp::append_error(out, msg);
}

namespace {

// `CMD HELP`: an array of status lines, as Redis answers it.
void append_help(std::string& out, std::string_view cmd, std::span<const char* const> lines) {
  resp::append_array_header(out, lines.size() + 3);
  std::string head = upper(cmd);
  head += " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:";
  resp::append_simple(out, head);
  for (const char* l : lines) resp::append_simple(out, l);
  resp::append_simple(out, "HELP");
  resp::append_simple(out, "    Print this help.");
}

}  // namespace

// `CMD HELP`: true once it answered (the help, or Redis's arity error for `CMD HELP x`).
bool answer_help(std::string& out, Args args, std::span<const char* const> lines) {
  if (!resp::iequals(args[1], "HELP")) return false;
  if (args.size() == 2) {
    append_help(out, args[0], lines);
  } else {
    resp::append_error(out, "ERR wrong number of arguments for '" + lower(args[0]) + "|help' command");
  }
  return true;
}

namespace {

constexpr const char* kClientHelp[] = {
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
};

constexpr const char* kCommandHelp[] = {
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands in this server.",
    "LIST",
    "    Return a list of all commands in this server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands",
    "    (ticketd documents its TICKET and cluster commands).",
};

constexpr const char* kAclHelp[] = {
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "WHOAMI",
    "    Return the current connection username.",
};

constexpr std::string_view kWrongPass =
    "WRONGPASS invalid username-password pair or user is disabled.";

// AUTH and HELLO's AUTH: true once `c` is logged in as `user`; else -WRONGPASS, and the
// connection keeps the user it had (as in Redis).
bool log_in(Shard& s, Connection* c, std::string_view user, std::string_view password,
            std::string& out) {
  const auth::User* u = s.node().users().authenticate(user, password);
  if (u == nullptr) {
    s.stats().auth_failures.fetch_add(1, std::memory_order_relaxed);
    resp::append_error(out, kWrongPass);
    return false;
  }
  set_user(s.node(), c, u);
  return true;
}

void cmd_auth(Shard& s, Connection* c, Args args, std::string& out) {
  if (args.size() > 3) {
    resp::append_error(out, "ERR syntax error");
    return;
  }
  if (args.size() == 2) {
    // AUTH password logs in as `default`; Redis refuses it when that user needs no password.
    const auth::User* d = s.node().users().find(auth::kDefaultUser);
    if (d != nullptr && d->nopass) {
      resp::append_error(out, "ERR AUTH <password> called without any password configured for "
                              "the default user. Are you sure your configuration is correct?");
      return;
    }
    if (log_in(s, c, auth::kDefaultUser, args[1], out)) resp::append_simple(out, "OK");
    return;
  }
  if (log_in(s, c, args[1], args[2], out)) resp::append_simple(out, "OK");
}

void cmd_acl(Shard&, Connection* c, Args args, std::string& out) {
  std::string_view sub = args[1];
  if (answer_help(out, args, kAclHelp)) return;
  if (resp::iequals(sub, "WHOAMI") && args.size() == 2) {
    resp::append_bulk(out, c->user != nullptr ? std::string_view(c->user->name) : "");
  } else if (resp::iequals(sub, "CAT") && args.size() <= 3) {
    if (args.size() == 2) {
      auto cats = auth::categories();
      resp::append_array_header(out, cats.size());
      for (const auth::CategoryInfo& cat : cats) resp::append_bulk(out, cat.name);
      return;
    }
    for (const auth::CategoryInfo& cat : auth::categories()) {
      if (!resp::iequals(args[2], cat.name)) continue;
      const auth::CommandCatalog& catalog = Commands::catalog();
      auth::CommandSet in = catalog.in(cat.bits);
      resp::append_array_header(out, in.count());
      for (size_t i = 0; i < catalog.size(); ++i) {
        if (in.test(i)) resp::append_bulk(out, catalog.name(i));
      }
      return;
    }
    std::string msg = "ERR Unknown category '";
    msg.append(args[2].substr(0, 128));
    msg += "'";
    resp::append_error(out, msg);
  } else if (resp::iequals(sub, "WHOAMI") || resp::iequals(sub, "CAT")) {
    resp::append_error(out, "ERR wrong number of arguments for 'acl|" + lower(sub) + "' command");
  } else {
    unknown_subcommand(out, "ACL", sub);
  }
}

void cmd_ping(Shard&, Connection*, Args args, std::string& out) {
  if (args.size() > 2) {
    resp::append_error(out, "ERR wrong number of arguments for 'ping' command");
  } else if (args.size() == 2) {
    resp::append_bulk(out, args[1]);
  } else {
    resp::append_simple(out, "PONG");
  }
}

void cmd_echo(Shard&, Connection*, Args args, std::string& out) { resp::append_bulk(out, args[1]); }

void cmd_quit(Shard&, Connection* c, Args, std::string& out) {
  resp::append_simple(out, "OK");
  c->closing = true;
  c->close_after_flush = true;
}

void cmd_select(Shard&, Connection*, Args args, std::string& out) {
  if (args[1] == "0") {
    resp::append_simple(out, "OK");
  } else {
    bool numeric = !args[1].empty() && std::all_of(args[1].begin(), args[1].end(), [](char ch) {
      return std::isdigit(static_cast<unsigned char>(ch)) || ch == '-';
    });
    resp::append_error(out, numeric ? "ERR DB index is out of range"
                                    : "ERR value is not an integer or out of range");
  }
}

void hello_reply(Shard& s, Connection* c, std::string& out) {
  resp::append_array_header(out, 14);
  resp::append_bulk(out, "server");
  resp::append_bulk(out, "ticketd");
  resp::append_bulk(out, "version");
  resp::append_bulk(out, TICKETD_VERSION);
  resp::append_bulk(out, "proto");
  resp::append_integer(out, 2);
  resp::append_bulk(out, "id");
  resp::append_integer(out, static_cast<int64_t>(c->id));
  resp::append_bulk(out, "mode");
  resp::append_bulk(out, "cluster");
  resp::append_bulk(out, "role");
  // The ticket log publishes the role (Node::publish_role). Only the leader takes TICKETs;
  // a follower, or a node that knows no leader, is a replica to a client.
  resp::append_bulk(out, s.node().role() == ClusterRole::kLeader ? "master" : "replica");
  resp::append_bulk(out, "modules");
  resp::append_array_header(out, 0);
}

void cmd_hello(Shard& s, Connection* c, Args args, std::string& out) {
  // RESP2 only: a client asking for 3 gets -NOPROTO and falls back, as with old Redis.
  size_t i = 1;
  if (args.size() >= 2) {
    std::string_view v = args[1];
    if (v != "2") {
      if (v == "3") {
        resp::append_error(out, "NOPROTO sorry, this protocol version is not supported.");
      } else {
        bool numeric = !v.empty() && std::all_of(v.begin(), v.end(), [](char ch) {
          return std::isdigit(static_cast<unsigned char>(ch));
        });
        resp::append_error(out, numeric ? "NOPROTO sorry, this protocol version is not supported."
                                        : "ERR Protocol version is not an integer or out of range");
      }
      return;
    }
    i = 2;
  }
  std::string_view setname, user, password;
  bool has_setname = false, has_auth = false;
  for (; i < args.size(); ++i) {
    if (resp::iequals(args[i], "AUTH") && i + 2 < args.size()) {
      user = args[i + 1];
      password = args[i + 2];
      has_auth = true;
      i += 2;
    } else if (resp::iequals(args[i], "SETNAME") && i + 1 < args.size()) {
      setname = args[++i];
      has_setname = true;
    } else {
      std::string msg = "ERR Syntax error in HELLO option '";
      msg.append(args[i].substr(0, 128));
      msg += "'";
      resp::append_error(out, msg);
      return;
    }
  }
  if (has_auth && !log_in(s, c, user, password, out)) return;
  if (c->user == nullptr) {
    resp::append_error(out, "NOAUTH HELLO must be called with the client already authenticated, "
                            "otherwise the HELLO <proto> AUTH <user> <pass> option can be used "
                            "to authenticate the client and select the RESP protocol version at "
                            "the same time");
    return;
  }
  if (has_setname) c->name.assign(setname);
  hello_reply(s, c, out);
}

bool valid_client_name(std::string_view n) {
  for (char ch : n) {
    if (ch < '!' || ch > '~') return false;
  }
  return true;
}

void cmd_client(Shard& s, Connection* c, Args args, std::string& out) {
  std::string_view sub = args[1];
  if (answer_help(out, args, kClientHelp)) return;
  if (resp::iequals(sub, "SETNAME") && args.size() == 3) {
    if (!valid_client_name(args[2])) {
      resp::append_error(out,
                         "ERR Client names cannot contain spaces, newlines or special characters.");
      return;
    }
    c->name.assign(args[2]);
    resp::append_simple(out, "OK");
  } else if (resp::iequals(sub, "GETNAME") && args.size() == 2) {
    if (c->name.empty()) {
      resp::append_null(out);
    } else {
      resp::append_bulk(out, c->name);
    }
  } else if (resp::iequals(sub, "SETINFO") && args.size() == 4) {
    if (!resp::iequals(args[2], "LIB-NAME") && !resp::iequals(args[2], "LIB-VER")) {
      std::string msg = "ERR Unrecognized option '";
      msg.append(args[2].substr(0, 128));
      msg += "'";
      resp::append_error(out, msg);
      return;
    }
    resp::append_simple(out, "OK");
  } else if (resp::iequals(sub, "ID") && args.size() == 2) {
    resp::append_integer(out, static_cast<int64_t>(c->id));
  } else if (resp::iequals(sub, "INFO") && args.size() == 2) {
    std::string line = "id=" + std::to_string(c->id) + " name=" + c->name +
                       " age=" + std::to_string((now_ms() - c->created_ms) / 1000) +
                       " shard=" + std::to_string(s.index()) +
                       " user=" + (c->user != nullptr ? c->user->name : std::string()) + "\n";
    resp::append_bulk(out, line);
  } else if (resp::iequals(sub, "SETNAME") || resp::iequals(sub, "GETNAME") ||
             resp::iequals(sub, "SETINFO") || resp::iequals(sub, "ID") ||
             resp::iequals(sub, "INFO")) {
    std::string msg = "ERR wrong number of arguments for 'client|" + lower(sub) + "' command";
    resp::append_error(out, msg);
  } else {
    unknown_subcommand(out, "CLIENT", sub);
  }
}

std::span<const CommandSpec> command_table();

void command_entry(std::string& out, const CommandSpec& spec) {
  // The Redis 7 COMMAND reply shape: name, arity, flags, first key, last key, step,
  // ACL categories, tips, key specs, subcommands.
  resp::append_array_header(out, 10);
  resp::append_bulk(out, spec.name);
  resp::append_integer(out, spec.arity);
  std::string_view flags = spec.flags;
  size_t nflags = flags.empty() ? 0 : static_cast<size_t>(std::count(flags.begin(), flags.end(), ' ') + 1);
  resp::append_array_header(out, nflags);
  while (!flags.empty()) {
    size_t sp = flags.find(' ');
    resp::append_simple(out, flags.substr(0, sp));
    flags = sp == std::string_view::npos ? std::string_view{} : flags.substr(sp + 1);
  }
  resp::append_integer(out, spec.first_key);
  resp::append_integer(out, spec.last_key);
  resp::append_integer(out, spec.key_step);
  resp::append_array_header(out, 0);
  resp::append_array_header(out, 0);
  if (spec.first_key == 0) {
    resp::append_array_header(out, 0);
  } else {
    // One key spec: the key at index first_key (Redis 7's begin_search / find_keys).
    resp::append_array_header(out, 1);
    resp::append_array_header(out, 6);
    resp::append_bulk(out, "flags");
    resp::append_array_header(out, 2);
    resp::append_simple(out, "RW");
    resp::append_simple(out, "UPDATE");
    // "<step>": {"type": <type>, "spec": {<fields> pairs follow}}
    auto search_step = [&](const char* step, const char* type, size_t fields) {
      resp::append_bulk(out, step);
      resp::append_array_header(out, 4);
      resp::append_bulk(out, "type");
      resp::append_bulk(out, type);
      resp::append_bulk(out, "spec");
      resp::append_array_header(out, 2 * fields);
    };
    search_step("begin_search", "index", 1);
    resp::append_bulk(out, "index");
    resp::append_integer(out, spec.first_key);
    search_step("find_keys", "range", 3);
    resp::append_bulk(out, "lastkey");
    resp::append_integer(out, spec.last_key - spec.first_key);
    resp::append_bulk(out, "keystep");
    resp::append_integer(out, spec.key_step);
    resp::append_bulk(out, "limit");
    resp::append_integer(out, 0);
  }
  resp::append_array_header(out, 0);
}

const CommandSpec* find_command(std::string_view name) {
  for (const CommandSpec& spec : command_table()) {
    if (resp::iequals(name, spec.name)) return &spec;
  }
  return nullptr;
}

void cmd_command(Shard&, Connection*, Args args, std::string& out) {
  auto table = command_table();
  if (args.size() == 1) {
    resp::append_array_header(out, table.size());
    for (const CommandSpec& spec : table) command_entry(out, spec);
    return;
  }
  std::string_view sub = args[1];
  if (answer_help(out, args, kCommandHelp)) return;
  if (resp::iequals(sub, "COUNT") && args.size() == 2) {
    resp::append_integer(out, static_cast<int64_t>(table.size()));
  } else if (resp::iequals(sub, "DOCS")) {
    // A map of name -> docs (flat in RESP2) for the commands asked (all: none named) that
    // have docs; the others are left out, as Redis leaves out unknown names.
    std::string body;
    size_t n = 0;
    if (args.size() == 2) {
      for (size_t i = 0; i < sequences::docs_count(); ++i) {
        n += sequences::append_docs(body, sequences::docs_name(i)) ? 1 : 0;
      }
    } else {
      for (size_t i = 2; i < args.size(); ++i) n += sequences::append_docs(body, args[i]) ? 1 : 0;
    }
    resp::append_array_header(out, 2 * n);
    out += body;
  } else if (resp::iequals(sub, "INFO")) {
    resp::append_array_header(out, args.size() - 2);
    for (size_t i = 2; i < args.size(); ++i) {
      const CommandSpec* spec = find_command(args[i]);
      if (spec == nullptr) {
        resp::append_null_array(out);
      } else {
        command_entry(out, *spec);
      }
    }
  } else if (resp::iequals(sub, "LIST") && args.size() == 2) {
    resp::append_array_header(out, table.size());
    for (const CommandSpec& spec : table) resp::append_bulk(out, spec.name);
  } else {
    unknown_subcommand(out, "COMMAND", sub);
  }
}

void cmd_info(Shard& s, Connection* c, Args args, std::string& out) {
  // INFO [section ...] (Redis 7): no section means `default`; unknown names add nothing.
  static constexpr std::string_view kDefault[] = {"default"};
  Args sections = args.size() > 1 ? args.subspan(1) : Args(kDefault);
  std::string text = Commands::info_text(s, sections);
  bool raft = Commands::info_wants(sections, "raft");
  if (!raft) {
    resp::append_bulk(out, text);
    return;
  }
  // The raft section lives on shard 0: the reply comes back from there, in order.
  if (!text.empty()) text += "\r\n";
  std::string_view fwd[2] = {"INFO", text};
  s.submit_admin(c, fwd);
}

void cmd_raft_admin(Shard& s, Connection* c, Args args, std::string&) {
  // Raft state and membership live on shard 0; the reply keeps its place in the pipeline.
  s.submit_admin(c, args);
}

const CommandSpec kCommands[] = {
    // TICKET alone takes the fast path in Shard::run_commands; `TICKET name` comes here.
    {"ticket", -1, "write fast", &sequences::cmd_ticket, 1, 1, 1},
    {"ping", -1, "fast", &cmd_ping},
    {"echo", 2, "fast", &cmd_echo},
    {"quit", -1, "fast", &cmd_quit},
    {"select", 2, "loading fast", &cmd_select},
    {"hello", -1, "noscript loading fast", &cmd_hello},
    {"client", -2, "noscript loading", &cmd_client},
    {"config", -2, "admin noscript loading", &cmd_config},
    {"command", -1, "loading", &cmd_command},
    {"info", -1, "loading", &cmd_info},
    {"raft.addvoter", -3, "admin", &cmd_raft_admin},
    {"raft.removeserver", -2, "admin", &cmd_raft_admin},
    {"raft.configuration", 1, "admin", &cmd_raft_admin},
    {"raft.leader", 1, "fast", &cmd_raft_admin},
    {"raft.lastcontact", 1, "fast", &cmd_raft_admin},
    {"raft.snapshot", 1, "admin", &cmd_raft_admin},
    {"raft.stats", 1, "admin", &cmd_raft_admin},
    {"raft.transferleader", 2, "admin", &cmd_raft_admin},
    {"raft.join", -5, "admin", &cmd_raft_admin},
    // Named sequences (issue 11; src/server/sequence_commands.cpp). The name is the key.
    {"ticket.block", 3, "write fast", &sequences::cmd_block, 1, 1, 1},
    {"ticket.create", -2, "write", &sequences::cmd_create, 1, 1, 1},
    {"ticket.floor", 3, "write", &sequences::cmd_floor, 1, 1, 1},
    {"ticket.drop", 2, "write", &sequences::cmd_drop, 1, 1, 1},
    {"ticket.list", 1, "readonly", &sequences::cmd_list},
    {"ticket.info", 2, "readonly", &sequences::cmd_info, 1, 1, 1},
    {"ticket.last", -1, "readonly fast", &sequences::cmd_last, 1, 1, 1},
    {"auth", -2, "noscript loading stale fast no-auth", &cmd_auth},
    {"acl", -2, "", &cmd_acl},
    // Cluster-aware clients (issue 14; src/server/cluster_api.cpp, src/cluster/cluster_commands.cpp).
    {"cluster", -2, "", &cluster_api::cmd_cluster},
    {"role", 1, "noscript loading stale fast", &cluster_api::cmd_role},
    {"readonly", 1, "loading stale fast", &cluster_api::cmd_readonly},
    {"readwrite", 1, "loading stale fast", &cluster_api::cmd_readwrite},
    {"tls.reload", 1, "admin noscript", &tls_commands::cmd_reload},  // issue 13
};

std::span<const CommandSpec> command_table() { return kCommands; }

// The table as auth sees it, and which commands run before authentication.
struct Permissions {
  auth::CommandCatalog catalog;
  auth::CommandSet unauthenticated;
  size_t ticket;
};

Permissions make_permissions() {
  std::vector<std::string_view> names;
  for (const CommandSpec& spec : kCommands) names.emplace_back(spec.name);
  Permissions p{auth::CommandCatalog(names), {}, 0};
  for (size_t i = 0; i < names.size(); ++i) {
    if (auth::runs_unauthenticated(names[i])) p.unauthenticated.set(i);
  }
  p.ticket = *p.catalog.find("ticket");
  return p;
}

const Permissions& permissions() {
  static const Permissions p = make_permissions();
  return p;
}

// Before a command runs: is `c` logged in, and may its user run command `id`? Else the
// refusal, as Redis words it.
bool permitted(Shard& s, Connection* c, const CommandSpec& spec, std::string& out) {
  size_t id = static_cast<size_t>(&spec - kCommands);
  const Permissions& p = permissions();
  if (p.unauthenticated.test(id)) return true;
  if (c->user == nullptr) {
    resp::append_error(out, "NOAUTH Authentication required.");
    return false;
  }
  if (c->user->may_run(id)) return true;
  s.stats().perm_denied.fetch_add(1, std::memory_order_relaxed);
  std::string msg = "NOPERM User " + c->user->name + " has no permissions to run the '";
  msg += spec.name;
  msg += "' command";
  resp::append_error(out, msg);
  return false;
}

void append_unknown_command(std::string& out, Args args) {
  std::string msg = "ERR unknown command '";
  msg.append(args[0].substr(0, 128));
  msg += "', with args beginning with: ";
  for (size_t i = 1; i < args.size() && msg.size() < 512; ++i) {
    msg += "'";
    msg.append(args[i].substr(0, 128));
    msg += "' ";
  }
  resp::append_error(out, msg);
}

}  // namespace

void Commands::run(Shard& s, Connection* c, Args args) {
  std::string& out = s.reply_buffer(c);
  size_t before = out.size();
  const CommandSpec* spec = find_command(args[0]);
  if (spec == nullptr) {
    append_unknown_command(out, args);
    s.count_error(std::string_view(out).substr(before));  // no command to count it under
    return;
  }
  size_t id = static_cast<size_t>(spec - kCommands);
  int n = static_cast<int>(args.size());
  if ((spec->arity > 0 && n != spec->arity) || (spec->arity < 0 && n < -spec->arity)) {
    std::string msg = "ERR wrong number of arguments for '";
    msg += spec->name;
    msg += "' command";
    resp::append_error(out, msg);
    s.reject(id, std::string_view(out).substr(before));
    return;
  }
  if (!permitted(s, c, *spec, out)) {
    s.reject(id, std::string_view(out).substr(before));
    return;
  }
  // Counted when its reply is ready: now, or (a ticket request, a command run on shard 0)
  // when the answer comes back, which Shard::apply_result / drain_admin_replies count.
  uint64_t pending = c->outstanding;
  uint64_t run = c->ticket_run;  // `TICKET default` joins the plain TICKETs' run
  uint64_t t0 = mono_ns();
  s.begin_command(id, t0);
  spec->handler(s, c, args, out);
  if (c->outstanding > pending || c->ticket_run > run) return;
  s.finish_command(id, mono_ns() - t0, std::string_view(out).substr(before));
}

std::vector<std::string_view> Commands::command_names() {
  std::vector<std::string_view> names;
  for (const CommandSpec& spec : kCommands) names.emplace_back(spec.name);
  return names;
}

size_t Commands::command_count() { return std::size(kCommands); }

const auth::CommandCatalog& Commands::catalog() { return permissions().catalog; }
size_t Commands::ticket_id() { return permissions().ticket; }
size_t Commands::ticket_block_id() {
  static const size_t id = *permissions().catalog.find("ticket.block");
  return id;
}

BatchStatus Commands::ticket_admission(Shard& s) {
  switch (s.node().role()) {
    case ClusterRole::kLeader: return BatchStatus::kOk;
    case ClusterRole::kFollower: return BatchStatus::kNotLeader;
    case ClusterRole::kNoLeader: return BatchStatus::kNoLeader;
    case ClusterRole::kElection: return BatchStatus::kOk;  // the log holds it for a leader
  }
  return BatchStatus::kNoLeader;
}

void Commands::append_refusal(Shard& s, std::string& out, BatchStatus why, std::string_view key) {
  if (why == BatchStatus::kNotLeader) {
    // -MOVED <the key's slot> sends redis-cli -c and cluster-aware clients to the leader.
    std::string addr = s.node().leader_service_addr();
    if (!addr.empty()) {
      uint16_t slot = key == "default" ? default_slot() : key_hash_slot(key);
      std::string msg = "MOVED " + std::to_string(slot) + " " + addr;
      resp::append_error(out, msg);
      return;
    }
    why = BatchStatus::kNoLeader;
  }
  resp::append_error(out, batch_status_error(why));
}

std::string Commands::refusal(Shard& s, BatchStatus why, std::string_view key) {
  std::string r;
  append_refusal(s, r, why, key);
  return r;
}

namespace {
// One INFO line: printf-style, then CRLF.
__attribute__((format(printf, 2, 3))) void appendf(std::string& r, const char* fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  r += line;
  r += "\r\n";
}
}  // namespace

bool Commands::info_wants(std::span<const std::string_view> sections, std::string_view name) {
  // As Redis 7: `default` (or no argument) is every section but commandstats and
  // latencystats; `all` and `everything` add them (ticketd has no module sections).
  bool not_default = name == "commandstats" || name == "latencystats";
  for (std::string_view sec : sections) {
    if (resp::iequals(sec, name) || resp::iequals(sec, "all") || resp::iequals(sec, "everything") ||
        (!not_default && resp::iequals(sec, "default"))) {
      return true;
    }
  }
  return false;
}

namespace {
uint64_t resident_bytes() {
  // /proc/self/statm: size resident ... in pages.
  unsigned long long size = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) : 0;
}
}  // namespace

std::string Commands::info_text(Shard& s, std::span<const std::string_view> sections) {
  Node& node = s.node();
  auto want = [&](std::string_view name) { return info_wants(sections, name); };
  std::string r;
  uint64_t connected = 0, accepted = 0, rejected = 0, commands = 0, tickets = 0, requests = 0,
           batches = 0, in = 0, outb = 0, auth_failed = 0, perm_denied = 0,
           protected_refused = 0, bound_drops = 0;
  for (uint32_t i = 0; i < node.shard_count(); ++i) {
    ShardStats& st = node.shard(i).stats();
    connected += st.connected.load(std::memory_order_relaxed);
    accepted += st.accepted.load(std::memory_order_relaxed);
    rejected += st.rejected.load(std::memory_order_relaxed);
    commands += st.commands.load(std::memory_order_relaxed);
    tickets += st.tickets.load(std::memory_order_relaxed);
    requests += st.ticket_requests.load(std::memory_order_relaxed);
    batches += st.batches.load(std::memory_order_relaxed);
    in += st.bytes_in.load(std::memory_order_relaxed);
    outb += st.bytes_out.load(std::memory_order_relaxed);
    auth_failed += st.auth_failures.load(std::memory_order_relaxed);
    perm_denied += st.perm_denied.load(std::memory_order_relaxed);
    protected_refused += st.protected_refused.load(std::memory_order_relaxed);
    bound_drops += st.reply_bound_drops.load(std::memory_order_relaxed);
  }
  LogStats& ls = node.log_stats();
  const ServerOptions& o = node.opts();
  uint64_t uptime = (now_ms() - node.start_ms()) / 1000;
  if (want("server")) {
    r += "# Server\r\n";
    appendf(r, "redis_version:7.0.0");
    appendf(r, "ticketd_version:%s", TICKETD_VERSION);
    appendf(r, "redis_mode:cluster");
    appendf(r, "os:Linux");
    appendf(r, "process_id:%d", static_cast<int>(::getpid()));
    appendf(r, "tcp_port:%u", static_cast<unsigned>(node.service_port()));
    appendf(r, "uptime_in_seconds:%llu", static_cast<unsigned long long>(uptime));
    appendf(r, "node_id:%llu", static_cast<unsigned long long>(o.id));
    appendf(r, "threads:%u", node.shard_count());
    appendf(r, "io_uring_setup:%s", s.loop()->setup_mode().c_str());
    // Asked at run time: the allocator is chosen when the binary is linked, not here.
    appendf(r, "mem_allocator:%s", mi_version != nullptr ? "mimalloc" : "libc");
    r += "\r\n";
  }
  if (want("clients")) {
    r += "# Clients\r\n";
    appendf(r, "connected_clients:%llu", static_cast<unsigned long long>(connected));
    appendf(r, "maxclients:%u", o.max_clients);
    appendf(r, "blocked_clients:0");  // no command of ours blocks
    // Who the clients are logged in as: users with at least one client, in table order.
    const auth::UserTable& users = node.users();
    std::string by_user;
    for (size_t i = 0; i < users.size(); ++i) {
      uint64_t n = node.user_clients(static_cast<uint32_t>(i)).load(std::memory_order_relaxed);
      if (n == 0) continue;
      if (!by_user.empty()) by_user += ',';
      by_user += users.at(i).name + "=" + std::to_string(n);
    }
    r += "clients_by_user:" + by_user + "\r\n";
    appendf(r, "unauthenticated_clients:%llu",
            static_cast<unsigned long long>(node.unauthenticated_clients().load()));
    appendf(r, "protected_mode:%d", node.protected_mode_active() ? 1 : 0);
    r += "\r\n";
  }
  if (want("memory")) {
    r += "# Memory\r\n";
    // Redis reports what its allocator holds; ticketd reports its resident set, which
    // is what an operator watching memory needs (redis-cli --stat reads used_memory).
    uint64_t rss = resident_bytes();
    appendf(r, "used_memory:%llu", static_cast<unsigned long long>(rss));
    appendf(r, "used_memory_rss:%llu", static_cast<unsigned long long>(rss));
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    appendf(r, "used_memory_peak_rss:%llu", static_cast<unsigned long long>(ru.ru_maxrss) * 1024ull);
    r += "\r\n";
  }
  if (want("persistence")) {
    r += "# Persistence\r\n";
    // Redis's fork and load flags (redis-cli --stat reads them): ticketd never forks, and
    // recovers its log before it listens.
    appendf(r, "loading:0");
    appendf(r, "rdb_bgsave_in_progress:0");
    appendf(r, "aof_rewrite_in_progress:0");
    appendf(r, "durability:%s", durability_name(o.durability));
    appendf(r, "data_dir:%s", node.data_dir().c_str());
    appendf(r, "wal_direct_io:%d", ls.direct_io.load() ? 1 : 0);
    appendf(r, "wal_last_index:%llu", static_cast<unsigned long long>(ls.last_index.load()));
    appendf(r, "wal_durable_index:%llu", static_cast<unsigned long long>(ls.durable_index.load()));
    appendf(r, "wal_writes:%llu", static_cast<unsigned long long>(ls.writes.load()));
    appendf(r, "wal_syncs:%llu", static_cast<unsigned long long>(ls.syncs.load()));
    appendf(r, "wal_write_errors:%llu", static_cast<unsigned long long>(ls.write_errors.load()));
    appendf(r, "wal_stalled:%d", ls.wal_stalled.load() ? 1 : 0);
    appendf(r, "wal_last_write_us:%llu", static_cast<unsigned long long>(ls.last_write_us.load()));
    appendf(r, "wal_writes_in_flight:%llu",
            static_cast<unsigned long long>(ls.writes_in_flight.load()));
    appendf(r, "wal_max_writes_in_flight:%llu",
            static_cast<unsigned long long>(ls.max_writes_in_flight.load()));
    appendf(r, "wal_overlapped_writes:%llu",
            static_cast<unsigned long long>(ls.overlapped_writes.load()));
    appendf(r, "window_confirmation:%s", o.window_lease ? "lease" : "quorum");
    appendf(r, "window_rounds:%llu", static_cast<unsigned long long>(ls.window_rounds.load()));
    appendf(r, "window_lease_confirms:%llu",
            static_cast<unsigned long long>(ls.window_lease_confirms.load()));
    appendf(r, "snapshot_index:%llu", static_cast<unsigned long long>(ls.snapshot_index.load()));
    appendf(r, "snapshots_taken:%llu", static_cast<unsigned long long>(ls.snapshots.load()));
    r += "\r\n";
  }
  if (want("stats")) {
    r += "# Stats\r\n";
    appendf(r, "total_connections_received:%llu", static_cast<unsigned long long>(accepted));
    appendf(r, "rejected_connections:%llu", static_cast<unsigned long long>(rejected));
    appendf(r, "total_commands_processed:%llu", static_cast<unsigned long long>(commands));
    appendf(r, "total_net_input_bytes:%llu", static_cast<unsigned long long>(in));
    appendf(r, "total_net_output_bytes:%llu", static_cast<unsigned long long>(outb));
    // Every error reply (errorstats counts them by kind), protocol errors included.
    appendf(r, "total_error_replies:%llu", static_cast<unsigned long long>(node.command_stats().error_total));
    appendf(r, "acl_access_denied_auth:%llu", static_cast<unsigned long long>(auth_failed));
    appendf(r, "acl_access_denied_cmd:%llu", static_cast<unsigned long long>(perm_denied));
    appendf(r, "protected_mode_refused:%llu", static_cast<unsigned long long>(protected_refused));
    // Redis 7's name: clients dropped because their replies passed the 64 MiB bound.
    appendf(r, "client_output_buffer_limit_disconnections:%llu",
            static_cast<unsigned long long>(bound_drops));
    appendf(r, "tickets_issued:%llu", static_cast<unsigned long long>(tickets));
    appendf(r, "ticket_requests:%llu", static_cast<unsigned long long>(requests));
    appendf(r, "ticket_batches:%llu", static_cast<unsigned long long>(batches));
    appendf(r, "last_ticket:%llu", static_cast<unsigned long long>(ls.counter.load()));
    uint64_t w = ls.writes.load();
    appendf(r, "tickets_per_log_write:%.2f",
        w == 0 ? 0.0 : static_cast<double>(ls.batched_tickets.load()) / static_cast<double>(w));
    r += "\r\n";
  }
  if (want("replication")) r += cluster_api::info_replication(node);
  // Redis 7's order: commandstats, errorstats, latencystats, then cluster and keyspace.
  if (want("commandstats") || want("errorstats") || want("latencystats")) {
    metrics::StatsView v = node.command_stats();
    static const std::vector<std::string_view> names = command_names();
    if (want("commandstats")) {
      metrics::append_commandstats(r, v, names);
      r += "\r\n";
    }
    if (want("errorstats")) {
      metrics::append_errorstats(r, v);
      r += "\r\n";
    }
    if (want("latencystats")) {
      metrics::append_latencystats(r, v, names);
      r += "\r\n";
    }
  }
  if (want("cluster")) r += cluster_api::info_cluster();
  if (want("tls")) tls_commands::append_info(s, r);
  if (want("keyspace")) {
    // One "database" holding the sequences, so redis-cli --stat's keys column counts them.
    r += "# Keyspace\r\n";
    appendf(r, "db0:keys=%llu,expires=0,avg_ttl=0",
            static_cast<unsigned long long>(ls.sequences.load(std::memory_order_relaxed)));
    r += "\r\n";
  }
  if (r.size() >= 2) r.resize(r.size() - 2);  // no blank line after the last section
  return r;
}

}  // namespace ticketd::server
