// The command table: a name, an arity checked in one place, a handler (Redis style).
// Promises: every reply is appended through Shard::reply_buffer, so order per connection
// holds. Never: blocks, or answers a command it does not implement with anything but -ERR.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shard.h"
#include "ticketd/auth/acl.h"

namespace ticketd::server {

class Commands {
 public:
  // Runs one parsed command (anything but the TICKET fast path) on `c`.
  static void run(Shard& s, Connection* c, std::span<const std::string_view> args);
  // May this node take TICKETs now? kOk, or why not (follower, no leader, stopping).
  static BatchStatus ticket_admission(Shard& s);
  // The reply for one TICKET of sequence `key` refused with `why` (e.g. -MOVED <key's slot>
  // to the leader; plain TICKET is `TICKET default`).
  static void append_refusal(Shard& s, std::string& out, BatchStatus why,
                             std::string_view key = "default");
  // The same reply as one RESP string, to append once per refused ticket of a run.
  static std::string refusal(Shard& s, BatchStatus why, std::string_view key = "default");
  // The INFO text of the sections named (`default`, `all`, `everything`: every one), in
  // Redis's order; the raft section is added on shard 0.
  static std::string info_text(Shard& s, std::span<const std::string_view> sections);
  // The command table as auth sees it: position i is permission bit i.
  static const auth::CommandCatalog& catalog();
  static size_t ticket_id();  // TICKET's position (the fast path's permission bit)
  static size_t ticket_block_id();
  // Every command's name, by position (INFO commandstats, /metrics).
  static std::vector<std::string_view> command_names();
  static size_t command_count();
  // Does INFO with these section arguments include section `name`?
  static bool info_wants(std::span<const std::string_view> sections, std::string_view name);
};

// Redis's texts for `CMD HELP` (true once answered) and an unknown subcommand, for commands
// that live in files of their own (commands.cpp).
bool answer_help(std::string& out, std::span<const std::string_view> args,
                 std::span<const char* const> lines);
void unknown_subcommand(std::string& out, std::string_view cmd, std::string_view sub);

}  // namespace ticketd::server
