// The one table of command categories. A command the server adds must be listed here (the
// server's tests check that every command of its table is); until it is, only users with
// @all may run it.
#include "text.h"
#include "ticketd/auth/acl.h"
#include "ticketd/base/check.h"

namespace ticketd::auth {

namespace {

struct CommandCategories {
  std::string_view name;
  uint32_t bits;
};

constexpr CommandCategories kTable[] = {
    // Being a client. AUTH, HELLO and QUIT also run before authentication.
    {"auth", kConnection},
    {"hello", kConnection},
    {"quit", kConnection},
    {"ping", kConnection},
    {"echo", kConnection},
    {"select", kConnection},
    {"client", kConnection},
    {"command", kConnection},
    {"acl", kConnection},     // ACL WHOAMI, ACL CAT: about oneself and the categories
    {"readonly", kConnection},   // cluster clients send them to replicas; they change nothing
    {"readwrite", kConnection},
    // Taking tickets.
    {"ticket", kTicket},
    {"ticket.block", kTicket},
    // Reading tickets and where the leader is.
    {"ticket.last", kRead},
    {"ticket.list", kRead},
    {"ticket.info", kRead},
    {"raft.leader", kRead},
    {"cluster", kRead},  // CLUSTER SLOTS, NODES, ...: where the leader is, for cluster clients
    {"role", kRead},
    // Monitoring (addresses, log positions, counters). INFO is also a read (it shows the
    // last ticket, and ioredis's ready check asks for it on connect).
    {"info", kStatus | kRead},
    {"raft.stats", kStatus},
    {"raft.configuration", kStatus},
    {"raft.lastcontact", kStatus},
    // CONFIG GET shows the settings (paths, addresses), CONFIG SET loglevel changes one: an
    // operator's, as in Redis (@admin). redis-benchmark's CONFIG GET at start tolerates -NOPERM.
    {"config", kStatus},
    // Changing who is in the cluster (RAFT.JOIN is what --join sends).
    {"raft.addvoter", kMembership},
    {"raft.removeserver", kMembership},
    {"raft.transferleader", kMembership},
    {"raft.join", kMembership},
    {"raft.snapshot", kSnapshot},
    // Changing sequences.
    {"ticket.create", kSequence},
    {"ticket.drop", kSequence},
    {"ticket.floor", kSequence},
    // Rotating the TLS certificates.
    {"tls.reload", kTls},
};

constexpr CategoryInfo kCategories[] = {
    {"all", kAll, "every command"},
    {"connection", kConnection, "being a client: PING, AUTH, HELLO, CLIENT, COMMAND, ACL WHOAMI"},
    {"ticket", kTicket, "taking tickets"},
    {"read", kRead, "reading tickets, the leader's address and INFO"},
    {"status", kStatus, "monitoring: INFO, RAFT.STATS, RAFT.CONFIGURATION, RAFT.LASTCONTACT, CONFIG"},
    {"membership", kMembership, "adding, removing and joining members; moving leadership"},
    {"snapshot", kSnapshot, "taking a snapshot"},
    {"sequence", kSequence, "creating, dropping and raising sequences"},
    {"tls", kTls, "reloading the TLS certificate, key and CA files"},
    {"application", kApplicationRole, "role: connection, ticket, read"},
    {"operator", kOperatorRole, "role: application plus status, membership, snapshot, sequence, tls"},
};

}  // namespace

std::span<const CategoryInfo> categories() { return kCategories; }

uint32_t command_categories(std::string_view name) {
  for (const CommandCategories& c : kTable) {
    if (same_name(name, c.name)) return c.bits;
  }
  return 0;
}

bool runs_unauthenticated(std::string_view name) {
  return same_name(name, "auth") || same_name(name, "hello") || same_name(name, "quit");
}

CommandCatalog::CommandCatalog(std::span<const std::string_view> names) {
  TICKETD_CHECK(names.size() <= kMaxCommands);
  for (std::string_view n : names) {
    TICKETD_CHECK(!find(n).has_value());
    names_.emplace_back(n);
    cats_.push_back(command_categories(n));
  }
}

std::optional<size_t> CommandCatalog::find(std::string_view name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (same_name(name, names_[i])) return i;
  }
  return std::nullopt;
}

CommandSet CommandCatalog::in(uint32_t bits) const {
  CommandSet s;
  for (size_t i = 0; i < names_.size(); ++i) {
    if (bits == kAll || (cats_[i] & bits) != 0) s.set(i);
  }
  return s;
}

}  // namespace ticketd::auth
