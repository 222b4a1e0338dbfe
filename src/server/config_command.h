// CONFIG GET / SET / HELP: the node's real settings, as Redis answers them.
// Promises: names are the flags' own (without dashes) plus the Redis names that mean the
// same here (port, bind, databases); matching is Redis's glob, case-insensitive; a secret
// is never answered; CONFIG SET changes only what can change at run time (loglevel) and
// answers -ERR for the rest. Never: pretends a setting changed that did not.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ticketd/server/options.h"

namespace ticketd::server {

class Shard;
struct Connection;

// Redis's stringmatchlen: * ? [abc] [^a] [a-z] and \x escapes.
bool glob_match(std::string_view pattern, std::string_view s, bool nocase);

// Built once at start from ServerOptions::config_params, then read-only (any shard reads
// it); run-time settable values (loglevel) are read live.
class ConfigTable {
 public:
  ConfigTable() = default;
  explicit ConfigTable(std::vector<ConfigParam> params);
  // Adds `name` or replaces its value (the node's effective values, Redis aliases).
  void set(std::string_view name, std::string value);
  // A value read when asked (the port bound, which --saddr :0 leaves to the kernel).
  void set_live(std::string_view name, std::function<std::string()> current);
  // Every setting matched by any of the patterns, each once, sorted by name.
  std::vector<ConfigParam> get(std::span<const std::string_view> patterns) const;
  // CONFIG SET name value [name value ...]: all applied, or none and *err (Redis's texts).
  bool set_at_run_time(std::span<const std::string_view> name_values, std::string* err) const;
  bool has(std::string_view name) const;
  // `name=value ...` of every setting, for the start-up log (values with spaces quoted).
  std::string describe() const;

 private:
  struct Entry {
    ConfigParam param;
    std::function<std::string()> live;  // set: the value is read when asked
  };
  Entry& entry(std::string_view name);
  std::vector<Entry> params_;  // sorted by name
};

class Node;
// The table a node answers: its flags (ServerOptions::config_params), the effective values
// where the flag leaves a choice to the node (threads), Redis's names (port, bind,
// databases) and the live loglevel.
ConfigTable effective_config_table(Node& node);

void cmd_config(Shard& s, Connection* c, std::span<const std::string_view> args, std::string& out);

}  // namespace ticketd::server
