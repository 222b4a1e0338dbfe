#include "ticketd/auth/acl.h"

#include <gtest/gtest.h>

namespace ticketd::auth {
namespace {

// A catalog shaped like the server's table.
const std::string_view kNames[] = {
    "ticket", "ping", "echo", "quit", "select", "hello", "client", "config", "command", "info",
    "auth", "acl", "raft.addvoter", "raft.removeserver", "raft.configuration", "raft.leader",
    "raft.lastcontact", "raft.snapshot", "raft.stats", "raft.transferleader", "raft.join",
    "ticket.block", "ticket.last", "ticket.create", "ticket.drop", "ticket.floor", "newthing"};

const CommandCatalog& catalog() {
  static const CommandCatalog c(kNames);
  return c;
}

bool may(const User& u, std::string_view cmd) { return u.may_run(*catalog().find(cmd)); }

std::vector<User> parse_ok(std::string_view text) {
  std::vector<User> users;
  std::string err;
  EXPECT_TRUE(parse_acl(text, catalog(), &users, &err)) << err;
  return users;
}

std::string parse_err(std::string_view text) {
  std::vector<User> users;
  std::string err;
  EXPECT_FALSE(parse_acl(text, catalog(), &users, &err));
  return err;
}

TEST(Acl, CatalogFindsAnyCaseAndCategories) {
  EXPECT_EQ(catalog().find("TICKET"), catalog().find("ticket"));
  EXPECT_FALSE(catalog().find("nosuch").has_value());
  CommandSet app = catalog().in(kApplicationRole);
  EXPECT_TRUE(app.test(*catalog().find("ticket")));
  EXPECT_TRUE(app.test(*catalog().find("ticket.block")));
  EXPECT_TRUE(app.test(*catalog().find("ticket.last")));
  EXPECT_TRUE(app.test(*catalog().find("ping")));
  EXPECT_FALSE(app.test(*catalog().find("raft.removeserver")));
  EXPECT_FALSE(app.test(*catalog().find("ticket.create")));
  EXPECT_TRUE(app.test(*catalog().find("info")));  // ioredis's ready check
  EXPECT_FALSE(app.test(*catalog().find("raft.stats")));
  // A command the category table does not list is reachable only through @all.
  EXPECT_FALSE(catalog().in(kOperatorRole).test(*catalog().find("newthing")));
  EXPECT_TRUE(catalog().all().test(*catalog().find("newthing")));
  EXPECT_EQ(catalog().all().count(), std::size(kNames));
}

TEST(Acl, EveryCategoryTableEntryHasACategoryAndRolesNest) {
  for (const CategoryInfo& c : categories()) EXPECT_NE(c.bits, 0u) << c.name;
  EXPECT_EQ(kApplicationRole & kOperatorRole, kApplicationRole);
  EXPECT_EQ(command_categories("TICKET.FLOOR"), kSequence);
  EXPECT_EQ(command_categories("ticket.info"), kRead);
  EXPECT_EQ(command_categories("raft.join"), kMembership);
  EXPECT_EQ(command_categories("nosuch"), 0u);
  EXPECT_TRUE(runs_unauthenticated("AUTH"));
  EXPECT_TRUE(runs_unauthenticated("hello"));
  EXPECT_TRUE(runs_unauthenticated("quit"));
  EXPECT_FALSE(runs_unauthenticated("ping"));
}

TEST(Acl, ParsesRolesPasswordsAndDigests) {
  std::string hex = to_hex(sha256("ops-secret"));
  auto users = parse_ok(
      "# two roles\n"
      "user app on >app-secret +@application\r\n"
      "\n"
      "   user ops on #" + hex + " +@operator\n"
      "user gone off >x allcommands\n");
  ASSERT_EQ(users.size(), 3u);
  const User& app = users[0];
  EXPECT_EQ(app.name, "app");
  EXPECT_TRUE(app.enabled);
  EXPECT_FALSE(app.nopass);
  EXPECT_TRUE(app.password_matches("app-secret"));
  EXPECT_FALSE(app.password_matches("app-secreT"));
  EXPECT_FALSE(app.password_matches(""));
  EXPECT_TRUE(may(app, "ticket"));
  EXPECT_TRUE(may(app, "TICKET.LAST"));
  EXPECT_FALSE(may(app, "raft.removeserver"));
  EXPECT_FALSE(may(app, "raft.snapshot"));
  EXPECT_FALSE(may(app, "ticket.create"));
  const User& ops = users[1];
  EXPECT_TRUE(ops.password_matches("ops-secret"));
  EXPECT_TRUE(may(ops, "raft.removeserver"));
  EXPECT_TRUE(may(ops, "raft.snapshot"));
  EXPECT_TRUE(may(ops, "ticket.floor"));
  EXPECT_TRUE(may(ops, "info"));
  EXPECT_FALSE(may(ops, "newthing"));
  EXPECT_FALSE(users[2].enabled);
  EXPECT_TRUE(may(users[2], "newthing"));
}

TEST(Acl, RulesApplyLeftToRight) {
  auto users = parse_ok(
      "user a on allcommands -raft.removeserver -@sequence\n"
      "user b on +@operator -@membership +raft.join\n"
      "user c on +@all nocommands +ping\n"
      "user d on >one >two <one\n"
      "user e on >one nopass\n"
      "user f on nopass >one\n"
      "user g on >one resetpass\n"
      "user h on >one +@all reset\n"
      "user i on ~* &* allkeys allchannels resetkeys resetchannels +ping\n");
  ASSERT_EQ(users.size(), 9u);
  EXPECT_FALSE(may(users[0], "raft.removeserver"));
  EXPECT_FALSE(may(users[0], "ticket.drop"));
  EXPECT_TRUE(may(users[0], "raft.addvoter"));
  EXPECT_TRUE(may(users[0], "newthing"));
  EXPECT_FALSE(may(users[1], "raft.addvoter"));
  EXPECT_TRUE(may(users[1], "raft.join"));
  EXPECT_EQ(users[2].commands.count(), 1u);
  EXPECT_TRUE(may(users[2], "ping"));
  EXPECT_FALSE(users[3].password_matches("one"));
  EXPECT_TRUE(users[3].password_matches("two"));
  EXPECT_TRUE(users[4].nopass);
  EXPECT_TRUE(users[4].passwords.empty());
  EXPECT_FALSE(users[5].nopass);
  EXPECT_TRUE(users[5].password_matches("one"));
  EXPECT_FALSE(users[6].nopass);
  EXPECT_TRUE(users[6].passwords.empty());
  EXPECT_FALSE(users[7].enabled);
  EXPECT_TRUE(users[7].commands.none());
  EXPECT_TRUE(users[7].passwords.empty());
  EXPECT_TRUE(may(users[8], "ping"));
}

TEST(Acl, KeywordsAndNamesAreCaseInsensitiveButUserNamesAreNot) {
  auto users = parse_ok("USER App ON >p +@APPLICATION +RAFT.Stats\n");
  ASSERT_EQ(users.size(), 1u);
  EXPECT_EQ(users[0].name, "App");
  EXPECT_TRUE(users[0].enabled);
  EXPECT_TRUE(may(users[0], "raft.stats"));
  EXPECT_TRUE(may(users[0], "ticket"));
}

TEST(Acl, ErrorsNameTheLine) {
  EXPECT_EQ(parse_err("user a on\nusr b on\n"),
            "line 2: a line starts with 'user' (user NAME rules...), not 'usr'");
  EXPECT_EQ(parse_err("user\n"), "line 1: 'user' needs a name");
  EXPECT_EQ(parse_err("user a on\n\nuser a off\n"), "line 3: duplicate user 'a'");
  EXPECT_EQ(parse_err("user a on +frob\n"), "line 1: user 'a', word 4: unknown command 'frob'");
  EXPECT_EQ(parse_err("user a on +@frob\n"),
            "line 1: user 'a', word 4: unknown category '@frob' (ACL CAT lists them)");
  EXPECT_NE(parse_err("user a on +client|setname\n").find("subcommand rules"), std::string::npos);
  EXPECT_NE(parse_err("user a on ~tickets:*\n").find("key and channel patterns"), std::string::npos);
  EXPECT_NE(parse_err("user a on #abc\n").find("64 hex digits"), std::string::npos);
  EXPECT_NE(parse_err("user a on <nothere\n").find("does not have"), std::string::npos);
  EXPECT_NE(parse_err("user a on !" + to_hex(sha256("x")) + "\n").find("does not have"),
            std::string::npos);
  EXPECT_NE(parse_err("user " + std::string(129, 'x') + " on\n").find("1 to 128 bytes"),
            std::string::npos);
  EXPECT_NE(parse_err(std::string("user a\x01 on\n")).find("printable ASCII"), std::string::npos);
  EXPECT_EQ(parse_err(std::string("user a on\0\n", 11)), "line 1: a NUL byte");
}

TEST(Acl, ErrorsNeverEchoASecret) {
  // A password missing its '>' is not echoed, nor is a bad digest.
  std::string err = parse_err("user a on hunter2 +@all\n");
  EXPECT_EQ(err.find("hunter2"), std::string::npos) << err;
  EXPECT_NE(err.find("word 4 is not a rule"), std::string::npos) << err;
  err = parse_err("user a on #deadbeefhunter2\n");
  EXPECT_EQ(err.find("hunter2"), std::string::npos) << err;
  err = parse_err("user a on <hunter2\n");
  EXPECT_EQ(err.find("hunter2"), std::string::npos) << err;
}

TEST(Acl, LimitsOnUsersAndPasswords) {
  std::string many;
  for (size_t i = 0; i <= kMaxPasswords; ++i) many += " >p" + std::to_string(i);
  EXPECT_NE(parse_err("user a on" + many + "\n").find("more than 64 passwords"), std::string::npos);
  std::string users;
  for (size_t i = 0; i <= kMaxUsers; ++i) users += "user u" + std::to_string(i) + "\n";
  EXPECT_NE(parse_err(users).find("more than 4096 users"), std::string::npos);
}

TEST(UserTable, DefaultWithoutAnythingIsOpen) {
  UserTable t;
  std::string err;
  ASSERT_TRUE(UserTable::build(catalog(), std::nullopt, std::nullopt, &t, &err)) << err;
  ASSERT_EQ(t.size(), 1u);
  ASSERT_NE(t.implicit_user(), nullptr);
  EXPECT_EQ(t.implicit_user()->name, "default");
  EXPECT_TRUE(t.default_is_open());
  EXPECT_TRUE(t.implicit_user()->may_run(*catalog().find("newthing")));
  // nopass: any password logs in, as in Redis.
  EXPECT_EQ(t.authenticate("default", "whatever"), t.implicit_user());
}

TEST(UserTable, RequirepassProtectsDefault) {
  UserTable t;
  std::string err;
  ASSERT_TRUE(UserTable::build(catalog(), sha256("pw"), std::nullopt, &t, &err)) << err;
  EXPECT_EQ(t.implicit_user(), nullptr);
  EXPECT_FALSE(t.default_is_open());
  const User* d = t.authenticate("default", "pw");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->name, "default");
  EXPECT_TRUE(d->commands == catalog().all());
  EXPECT_EQ(t.authenticate("default", "pW"), nullptr);
  EXPECT_EQ(t.authenticate("nobody", "pw"), nullptr);
}

TEST(UserTable, AclFileWithoutDefaultLeavesItOff) {
  UserTable t;
  std::string err;
  std::string_view text = "user app on >a +@application\nuser off1 off >b +@all\nuser np on nopass +ping\n";
  ASSERT_TRUE(UserTable::build(catalog(), std::nullopt, text, &t, &err)) << err;
  ASSERT_EQ(t.size(), 4u);
  const User* d = t.find("default");
  ASSERT_NE(d, nullptr);
  EXPECT_FALSE(d->enabled);
  EXPECT_TRUE(d->commands.none());
  EXPECT_EQ(t.implicit_user(), nullptr);
  EXPECT_EQ(t.authenticate("default", ""), nullptr);
  ASSERT_NE(t.authenticate("app", "a"), nullptr);
  EXPECT_EQ(t.authenticate("app", "b"), nullptr);
  EXPECT_EQ(t.authenticate("off1", "b"), nullptr);  // disabled: WRONGPASS as Redis
  EXPECT_NE(t.authenticate("np", "anything"), nullptr);
}

TEST(UserTable, AclFileWithDefaultAndRequirepass) {
  UserTable t;
  std::string err;
  EXPECT_TRUE(UserTable::build(catalog(), sha256("pw"), std::string_view("user app on >a +@all\n"), &t,
                               &err)) << err;
  ASSERT_NE(t.authenticate("default", "pw"), nullptr);
  EXPECT_FALSE(UserTable::build(catalog(), sha256("pw"),
                                std::string_view("user default on >a +@all\n"), &t, &err));
  EXPECT_NE(err.find("keep one"), std::string::npos);
  ASSERT_TRUE(UserTable::build(catalog(), std::nullopt,
                               std::string_view("user default on nopass +@application\n"), &t, &err));
  ASSERT_NE(t.implicit_user(), nullptr);
  EXPECT_FALSE(t.implicit_user()->may_run(*catalog().find("raft.removeserver")));
  EXPECT_FALSE(UserTable::build(catalog(), std::nullopt, std::string_view("user x on +nope\n"), &t, &err));
  EXPECT_EQ(err, "line 1: user 'x', word 4: unknown command 'nope'");
}

}  // namespace
}  // namespace ticketd::auth
