// auth: who may run what. The command categories (one table, by command name), the users
// with their password digests and permitted commands, and the parser of the ACL file subset:
//
//   user NAME on|off [>password | #sha256hex | nopass ...] [+@category | -@category |
//                    +command | -command | allcommands | nocommands ...]
//
// Rules apply left to right, as in Redis. Promises: a password is kept only as its SHA-256
// digest and compared in constant time; a user's permissions are a bit set over the
// server's command table, so the check per command is one bit test. Never: a socket, a
// file (the server reads the ACL file and hands its text in), a thread or a clock.
#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ticketd/auth/digest.h"

namespace ticketd::auth {

inline constexpr size_t kMaxCommands = 128;   // commands in the server's table
inline constexpr size_t kMaxUserName = 128;   // bytes of a user name
inline constexpr size_t kMaxUsers = 4096;     // users in one ACL file
inline constexpr size_t kMaxPasswords = 64;   // passwords (digests) of one user
inline constexpr std::string_view kDefaultUser = "default";

using CommandSet = std::bitset<kMaxCommands>;

// Categories are bits; a command belongs to one or more. The roles are unions of them.
enum Category : uint32_t {
  kConnection = 1u << 0,  // being a client: PING, AUTH, HELLO, CLIENT, COMMAND, ACL WHOAMI...
  kTicket = 1u << 1,      // taking tickets: TICKET, TICKET.BLOCK
  kRead = 1u << 2,        // reading: TICKET.LAST/LIST/INFO, RAFT.LEADER, INFO
  kStatus = 1u << 3,      // monitoring: INFO, RAFT.STATS, RAFT.CONFIGURATION, RAFT.LASTCONTACT
  kMembership = 1u << 4,  // RAFT.ADDVOTER, RAFT.REMOVESERVER, RAFT.TRANSFERLEADER, RAFT.JOIN
  kSnapshot = 1u << 5,    // RAFT.SNAPSHOT
  kSequence = 1u << 6,    // TICKET.CREATE, TICKET.DROP, TICKET.FLOOR
  kTls = 1u << 7,         // TLS.RELOAD
};
inline constexpr uint32_t kApplicationRole = kConnection | kTicket | kRead;
inline constexpr uint32_t kOperatorRole =
    kApplicationRole | kStatus | kMembership | kSnapshot | kSequence | kTls;

struct CategoryInfo {
  std::string_view name;  // as written after '@', lower case
  uint32_t bits;          // kAll for "all": every command, in a category or not
  std::string_view what;
};
inline constexpr uint32_t kAll = 0xffffffffu;
std::span<const CategoryInfo> categories();
// The categories of a command (lower-case name), from the one table in categories.cpp;
// 0 for a name it does not list (such a command is reachable only through @all).
uint32_t command_categories(std::string_view name);
// Commands that run whatever a user's permissions say (before authentication, too).
bool runs_unauthenticated(std::string_view name);

// The server's commands, by position in its table: position i is bit i of a CommandSet.
class CommandCatalog {
 public:
  // Lower-case names; at most kMaxCommands, no duplicates (the server's own table: checked).
  explicit CommandCatalog(std::span<const std::string_view> names);
  size_t size() const { return names_.size(); }
  std::string_view name(size_t id) const { return names_[id]; }
  std::optional<size_t> find(std::string_view name) const;  // any case
  CommandSet in(uint32_t category_bits) const;  // kAll: every command
  CommandSet all() const { return in(kAll); }

 private:
  std::vector<std::string> names_;
  std::vector<uint32_t> cats_;
};

struct User {
  std::string name;
  uint32_t id = 0;      // its position in its UserTable (for per-user counters)
  bool enabled = false;
  bool nopass = false;  // any password (or none) logs in
  std::vector<Digest> passwords;
  CommandSet commands;

  // Constant time in the password: it is digested, and every stored digest is compared.
  bool password_matches(std::string_view password) const;
  bool may_run(size_t command_id) const { return commands.test(command_id); }
};

class UserTable {
 public:
  // The `default` user: on, every command, the --requirepass digest or, without one,
  // nopass (Redis's default). With an ACL file the users are the file's; a file that does
  // not define `default` leaves it off (unlike Redis, an ACL file never leaves the node
  // open by omission). --requirepass with a file that defines `default` is refused.
  // False with *err (the ACL file's errors name their line).
  static bool build(const CommandCatalog& catalog, const std::optional<Digest>& requirepass,
                    const std::optional<std::string_view>& acl_text, UserTable* out,
                    std::string* err);

  const User* find(std::string_view name) const;
  // The user `name` if it is enabled and `password` is one of its passwords; else null.
  // Does the same work for an unknown name as for a wrong password.
  const User* authenticate(std::string_view name, std::string_view password) const;
  // New connections start logged in as this user (default, on and nopass), or null: they
  // must AUTH first.
  const User* implicit_user() const;
  // No password protects the default user (Redis's protected-mode condition).
  bool default_is_open() const { return implicit_user() != nullptr; }
  size_t size() const { return users_.size(); }
  const User& at(size_t i) const { return *users_[i]; }

 private:
  // Stable addresses: connections hold `const User*` for their whole life.
  std::vector<std::unique_ptr<User>> users_;
};

// Parses ACL file text into users (no defaults added). False with *err as
// "line N: ..." for the first line refused.
bool parse_acl(std::string_view text, const CommandCatalog& catalog, std::vector<User>* out,
               std::string* err);

}  // namespace ticketd::auth
