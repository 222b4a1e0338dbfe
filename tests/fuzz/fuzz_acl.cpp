// libFuzzer target for the ACL file parser (src/auth): the file is an operator's, but a
// typo must come back as a line-numbered error, never a crash or a half-built table.
// Input: [control byte][ACL text]. Control bit 0: build the table with a --requirepass
// digest too.
// Traps on: an error that does not start with "line N: " for a line of the input; a parse
// that is not deterministic; a user whose name is empty, too long, not printable or not
// unique; a user with more passwords than the limit or with nopass and passwords; commands
// outside the catalog; a parsed user that, written back as an ACL line (#digests, +commands),
// does not parse to the same user; a built table without exactly one `default`, or whose
// implicit user is not the enabled nopass default.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ticketd/auth/acl.h"

namespace {

void require(bool cond) {
  if (!cond) __builtin_trap();
}

using namespace ticketd::auth;

const std::string_view kNames[] = {
    "ticket", "ping", "echo", "quit", "select", "hello", "client", "config", "command", "info",
    "auth", "acl", "raft.addvoter", "raft.removeserver", "raft.configuration", "raft.leader",
    "raft.lastcontact", "raft.snapshot", "raft.stats", "raft.transferleader", "raft.join",
    "ticket.block", "ticket.last", "ticket.create", "ticket.drop", "ticket.floor", "other"};

std::string as_line(const User& u, const CommandCatalog& cat) {
  std::string s = "user " + u.name + (u.enabled ? " on" : " off");
  if (u.nopass) s += " nopass";
  for (const Digest& d : u.passwords) s += " #" + to_hex(d);
  s += " nocommands";
  for (size_t i = 0; i < cat.size(); ++i) {
    if (u.commands.test(i)) s += " +" + std::string(cat.name(i));
  }
  return s + "\n";
}

bool same_user(const User& a, const User& b) {
  return a.name == b.name && a.enabled == b.enabled && a.nopass == b.nopass &&
         a.passwords == b.passwords && a.commands == b.commands;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  static const CommandCatalog catalog(kNames);
  if (size < 1) return 0;
  bool requirepass = raw[0] & 1;
  std::string_view text(reinterpret_cast<const char*>(raw) + 1, size - 1);

  std::vector<User> users, again;
  std::string err, err2;
  bool ok = parse_acl(text, catalog, &users, &err);
  bool ok2 = parse_acl(text, catalog, &again, &err2);
  require(ok == ok2 && err == err2 && users.size() == again.size());
  if (!ok) {
    require(err.rfind("line ", 0) == 0);
    size_t colon = err.find(": ");
    require(colon != std::string::npos && colon > 5);
    size_t line = std::stoul(err.substr(5, colon - 5));
    size_t lines = 1;
    for (char c : text) lines += c == '\n';
    require(line >= 1 && line <= lines);
  } else {
    CommandSet all = catalog.all();
    for (size_t i = 0; i < users.size(); ++i) {
      const User& u = users[i];
      require(!u.name.empty() && u.name.size() <= kMaxUserName);
      for (char c : u.name) require(c >= '!' && c <= '~');
      for (size_t j = 0; j < i; ++j) require(users[j].name != u.name);
      require(u.passwords.size() <= kMaxPasswords);
      require(!(u.nopass && !u.passwords.empty()));
      require((u.commands & ~all).none());
      require(same_user(u, again[i]));
      std::vector<User> back;
      std::string e;
      require(parse_acl(as_line(u, catalog), catalog, &back, &e));
      require(back.size() == 1 && same_user(back[0], u));
    }
  }

  UserTable t;
  std::optional<Digest> pass;
  if (requirepass) pass = sha256("pw");
  if (UserTable::build(catalog, pass, text, &t, &err)) {
    require(ok);
    size_t defaults = 0;
    for (size_t i = 0; i < t.size(); ++i) defaults += t.at(i).name == kDefaultUser;
    require(defaults == 1);
    const User* d = t.find(kDefaultUser);
    require(d != nullptr);
    require((t.implicit_user() == d) == (d->enabled && d->nopass));
    if (requirepass) require(t.authenticate(kDefaultUser, "pw") == d);
  }
  return 0;
}
