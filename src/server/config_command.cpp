#include "config_command.h"

#include <algorithm>
#include <cctype>

#include "node.h"
#include "ticketd/base/log.h"
#include "ticketd/resp/parser.h"
#include "ticketd/resp/writer.h"
#include "ticketd/server/config_params.h"

namespace ticketd::server {

namespace {

char fold(char ch, bool nocase) {
  return nocase ? static_cast<char>(std::tolower(static_cast<unsigned char>(ch))) : ch;
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& ch : r) ch = fold(ch, true);
  return r;
}

// What CONFIG SET may change while the node runs. Everything else is fixed at start.
struct Settable {
  const char* name;
  bool (*apply)(std::string_view value, bool dry_run, std::string* why);
  std::string (*current)();
};

bool set_loglevel(std::string_view value, bool dry_run, std::string* why) {
  logging::Level l;
  if (!logging::parse_level(value, &l)) {
    *why = "argument(s) must be one of the following: debug, verbose, notice, warning";
    return false;
  }
  if (!dry_run) logging::set_level(l);
  return true;
}

std::string current_loglevel() { return logging::level_name(logging::level()); }

constexpr Settable kSettable[] = {
    {"loglevel", &set_loglevel, &current_loglevel},
};

const Settable* settable(std::string_view name) {
  for (const Settable& s : kSettable) {
    if (lower(name) == s.name) return &s;
  }
  return nullptr;
}

constexpr const char* kConfigHelp[] = {
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values",
    "    (several patterns may be given).",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value> (several pairs may be given;",
    "    only loglevel can change while the node runs, every other setting is fixed",
    "    at start).",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command (commandstats, errorstats,",
    "    latencystats, total_error_replies).",
    "REWRITE",
    "    Not supported: edit the --config file and restart the node.",
};

// The same lines commands.cpp's answer_help writes for every HELP (Redis's shape).
void append_help(std::string& out) {
  resp::append_array_header(out, std::size(kConfigHelp) + 3);
  resp::append_simple(out, "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
  for (const char* l : kConfigHelp) resp::append_simple(out, l);
  resp::append_simple(out, "HELP");
  resp::append_simple(out, "    Print this help.");
}

void wrong_args(std::string& out, std::string_view sub) {
  resp::append_error(out, "ERR wrong number of arguments for 'config|" + lower(sub) + "' command");
}

}  // namespace

bool glob_match(std::string_view p, std::string_view s, bool nocase) {
  // Redis's util.c stringmatchlen, iteratively for '*' (backtracking to the last star).
  size_t pi = 0, si = 0;
  size_t star_p = std::string_view::npos, star_s = 0;
  while (si < s.size()) {
    if (pi < p.size()) {
      char pc = p[pi];
      if (pc == '*') {
        while (pi < p.size() && p[pi] == '*') ++pi;
        if (pi == p.size()) return true;
        star_p = pi;
        star_s = si;
        continue;
      }
      bool matched = false;
      size_t next = pi + 1;
      if (pc == '?') {
        matched = true;
      } else if (pc == '[') {
        size_t j = pi + 1;
        bool negate = j < p.size() && p[j] == '^';
        if (negate) ++j;
        bool hit = false;
        while (j < p.size() && p[j] != ']') {
          if (p[j] == '\\' && j + 1 < p.size()) {
            ++j;
            if (fold(p[j], nocase) == fold(s[si], nocase)) hit = true;
          } else if (j + 2 < p.size() && p[j + 1] == '-') {
            char a = fold(p[j], nocase), b = fold(p[j + 2], nocase), c = fold(s[si], nocase);
            if (a > b) std::swap(a, b);
            if (c >= a && c <= b) hit = true;
            j += 2;
          } else if (fold(p[j], nocase) == fold(s[si], nocase)) {
            hit = true;
          }
          ++j;
        }
        // An unterminated class runs to the end of the pattern, as in Redis.
        next = j < p.size() ? j + 1 : j;
        matched = negate ? !hit : hit;
      } else if (pc == '\\' && pi + 1 < p.size()) {
        matched = fold(p[pi + 1], nocase) == fold(s[si], nocase);
        next = pi + 2;
      } else {
        matched = fold(pc, nocase) == fold(s[si], nocase);
      }
      if (matched) {
        pi = next;
        ++si;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    pi = star_p;
    si = ++star_s;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

ConfigTable::ConfigTable(std::vector<ConfigParam> params) {
  for (ConfigParam& p : params) set(p.name, std::move(p.value));
  for (const Settable& st : kSettable) {
    if (has(st.name)) set_live(st.name, st.current);
  }
}

ConfigTable::Entry& ConfigTable::entry(std::string_view name) {
  std::string key = lower(name);
  auto it = std::lower_bound(params_.begin(), params_.end(), key,
                             [](const Entry& e, const std::string& k) { return e.param.name < k; });
  if (it == params_.end() || it->param.name != key) {
    it = params_.insert(it, Entry{ConfigParam{std::move(key), ""}, {}});
  }
  return *it;
}

void ConfigTable::set(std::string_view name, std::string value) {
  Entry& e = entry(name);
  e.param.value = std::move(value);
  e.live = nullptr;
}

void ConfigTable::set_live(std::string_view name, std::function<std::string()> current) {
  entry(name).live = std::move(current);
}

bool ConfigTable::has(std::string_view name) const {
  std::string key = lower(name);
  return std::any_of(params_.begin(), params_.end(),
                     [&](const Entry& e) { return e.param.name == key; });
}

std::string ConfigTable::describe() const {
  std::string out;
  for (const Entry& e : params_) {
    std::string v = e.live ? e.live() : e.param.value;
    if (!out.empty()) out += ' ';
    out += e.param.name;
    out += '=';
    bool quote = v.empty() || v.find(' ') != std::string::npos;
    out += quote ? "\"" + v + "\"" : v;
  }
  return out;
}

std::vector<ConfigParam> ConfigTable::get(std::span<const std::string_view> patterns) const {
  std::vector<ConfigParam> out;
  for (const Entry& e : params_) {
    bool wanted = std::any_of(patterns.begin(), patterns.end(), [&](std::string_view pat) {
      return glob_match(pat, e.param.name, true);
    });
    if (!wanted) continue;
    out.push_back(e.live ? ConfigParam{e.param.name, e.live()} : e.param);
  }
  return out;
}

bool ConfigTable::set_at_run_time(std::span<const std::string_view> nv, std::string* err) const {
  // Redis 7: every pair is checked first; nothing changes unless all of them can.
  auto failed = [&](std::string_view name, const std::string& why) {
    *err = "ERR CONFIG SET failed (possibly related to argument '" + std::string(name.substr(0, 128)) +
           "') - " + why;
    return false;
  };
  for (size_t i = 0; i + 1 < nv.size(); i += 2) {
    for (size_t j = 0; j < i; j += 2) {
      if (lower(nv[j]) == lower(nv[i])) return failed(nv[i], "duplicate parameter");
    }
    const Settable* s = settable(nv[i]);
    if (s == nullptr) {
      if (!has(nv[i]) && !is_secret_param(lower(nv[i]))) {
        *err = "ERR Unknown option or number of arguments for CONFIG SET - '" +
               std::string(nv[i].substr(0, 128)) + "'";
        return false;
      }
      return failed(nv[i], "can't set immutable config");
    }
    std::string why;
    if (!s->apply(nv[i + 1], /*dry_run=*/true, &why)) return failed(nv[i], why);
  }
  for (size_t i = 0; i + 1 < nv.size(); i += 2) {
    std::string why;
    settable(nv[i])->apply(nv[i + 1], /*dry_run=*/false, &why);
  }
  return true;
}

ConfigTable effective_config_table(Node& node) {
  ConfigTable t(node.opts().config_params);
  // --threads 0 means one shard per online CPU: say how many there are.
  t.set("threads", std::to_string(node.shard_count()));
  // Redis's names for the client address: `bind` (the host; "*" for every interface) and
  // `port` (the one bound: --saddr :0 leaves it to the kernel).
  t.set("bind", node.service_host().empty() ? std::string("*") : node.service_host());
  t.set_live("port", [&node] { return std::to_string(node.service_port()); });
  t.set("databases", "1");  // SELECT 0 only
  if (!t.has("loglevel")) t.set_live("loglevel", &current_loglevel);
  return t;
}

void cmd_config(Shard& s, Connection*, std::span<const std::string_view> args, std::string& out) {
  std::string_view sub = args[1];
  if (resp::iequals(sub, "HELP")) {
    if (args.size() == 2) {
      append_help(out);
    } else {
      wrong_args(out, sub);
    }
  } else if (resp::iequals(sub, "GET")) {
    if (args.size() < 3) return wrong_args(out, sub);
    // RESP2's flat name/value array (HELLO 3 is refused, so no client asks for a map).
    std::vector<ConfigParam> got = s.node().config_table().get(args.subspan(2));
    resp::append_array_header(out, got.size() * 2);
    for (const ConfigParam& p : got) {
      resp::append_bulk(out, p.name);
      resp::append_bulk(out, p.value);
    }
  } else if (resp::iequals(sub, "SET")) {
    if (args.size() < 4 || args.size() % 2 != 0) return wrong_args(out, sub);
    std::string err;
    std::span<const std::string_view> nv = args.subspan(2);
    if (!s.node().config_table().set_at_run_time(nv, &err)) {
      resp::append_error(out, err);
      return;
    }
    for (size_t i = 0; i + 1 < nv.size(); i += 2) {
      // Values of settable parameters are never secret (loglevel).
      s.node().log_line("CONFIG SET " + lower(nv[i]) + " " + std::string(nv[i + 1].substr(0, 64)));
    }
    resp::append_simple(out, "OK");
  } else if (resp::iequals(sub, "RESETSTAT")) {
    if (args.size() != 2) return wrong_args(out, sub);
    s.node().reset_command_stats();
    resp::append_simple(out, "OK");
  } else if (resp::iequals(sub, "REWRITE")) {
    if (args.size() != 2) return wrong_args(out, sub);
    resp::append_error(out, "ERR CONFIG REWRITE is not supported: ticketd reads its settings from "
                            "the command line and --config FILE at start; edit the file");
  } else {
    std::string msg = "ERR unknown subcommand '";
    msg.append(sub.substr(0, 128));
    msg += "'. Try CONFIG HELP.";
    resp::append_error(out, msg);
  }
}

}  // namespace ticketd::server
