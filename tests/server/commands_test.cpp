// The command table and the permissions: every command the server serves has a category in
// auth's table (a new command without one is reachable only through @all, which this test
// turns into a reminder), and the roles split the commands as SECURITY.md says.
#include "../../src/server/commands.h"

#include <gtest/gtest.h>

#include <string>

namespace ticketd::server {
namespace {

TEST(CommandTable, EveryCommandHasACategory) {
  const auth::CommandCatalog& cat = Commands::catalog();
  ASSERT_GT(cat.size(), 10u);
  for (size_t i = 0; i < cat.size(); ++i) {
    EXPECT_NE(auth::command_categories(cat.name(i)), 0u)
        << "command '" << cat.name(i) << "' has no category in src/auth/categories.cpp";
  }
}

TEST(CommandTable, TicketIsTheFastPathBit) {
  EXPECT_EQ(Commands::catalog().name(Commands::ticket_id()), "ticket");
}

TEST(CommandTable, RolesSplitTheCommands) {
  const auth::CommandCatalog& cat = Commands::catalog();
  auth::CommandSet app = cat.in(auth::kApplicationRole);
  auth::CommandSet ops = cat.in(auth::kOperatorRole);
  EXPECT_EQ(ops, cat.all()) << "an operator may run every command the server has";
  for (std::string_view name : {"ticket", "ping", "hello", "auth", "acl", "client", "raft.leader", "info",
                                "cluster", "role", "readonly", "readwrite"}) {
    ASSERT_TRUE(cat.find(name).has_value()) << name;
    EXPECT_TRUE(app.test(*cat.find(name))) << name;
  }
  for (std::string_view name : {"raft.addvoter", "raft.removeserver", "raft.transferleader",
                                "raft.join", "raft.snapshot", "raft.stats", "raft.configuration"}) {
    ASSERT_TRUE(cat.find(name).has_value()) << name;
    EXPECT_FALSE(app.test(*cat.find(name))) << name;
  }
}

}  // namespace
}  // namespace ticketd::server
