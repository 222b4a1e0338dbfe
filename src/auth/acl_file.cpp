// The ACL file subset and the user table built from it (and from --requirepass).
#include <algorithm>

#include "text.h"
#include "ticketd/auth/acl.h"

namespace ticketd::auth {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> w;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) w.push_back(line.substr(start, i - start));
  }
  return w;
}

// "" if `name` may name a user: 1..kMaxUserName printable ASCII bytes, no spaces (so it
// reads unchanged in CLIENT INFO, INFO and -NOPERM).
std::string check_user_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxUserName) {
    return "a user name has 1 to " + std::to_string(kMaxUserName) + " bytes";
  }
  for (char c : name) {
    if (c < '!' || c > '~') return "a user name is printable ASCII without spaces";
  }
  return "";
}

const CategoryInfo* find_category(std::string_view name) {
  for (const CategoryInfo& c : categories()) {
    if (same_name(name, c.name)) return &c;
  }
  return nullptr;
}

std::string truncated(std::string_view s) {
  return std::string(s.substr(0, 64)) + (s.size() > 64 ? "..." : "");
}

void add_digest(User* u, const Digest& d) {
  if (std::find(u->passwords.begin(), u->passwords.end(), d) == u->passwords.end()) {
    u->passwords.push_back(d);
  }
  u->nopass = false;
}

bool remove_digest(User* u, const Digest& d) {
  auto it = std::find(u->passwords.begin(), u->passwords.end(), d);
  if (it == u->passwords.end()) return false;
  u->passwords.erase(it);
  return true;
}

// Applies one rule to *u. "" or why it is refused. The text of a password rule is never
// part of the answer (the answer may be logged).
std::string apply_rule(std::string_view w, size_t pos, const CommandCatalog& catalog, User* u) {
  const std::string where = "word " + std::to_string(pos);
  if (same_name(w, "on")) {
    u->enabled = true;
  } else if (same_name(w, "off")) {
    u->enabled = false;
  } else if (w[0] == '>' || w[0] == '<' || w[0] == '#' || w[0] == '!') {
    // >password and <password add and remove a password; #digest and !digest the same
    // by its SHA-256 digest. Only the digest is kept.
    bool add = w[0] == '>' || w[0] == '#';
    Digest d{};
    if (w[0] == '>' || w[0] == '<') {
      d = sha256(w.substr(1));
    } else if (!parse_hex_digest(w.substr(1), &d)) {
      return where + ": '" + std::string(1, w[0]) +
             "' needs a SHA-256 digest in 64 hex digits (e.g. from `printf %s PASSWORD | sha256sum`)";
    }
    if (!add) {
      if (!remove_digest(u, d)) {
        return where + ": '" + std::string(1, w[0]) + "' removes a password the user does not have";
      }
    } else if (u->passwords.size() >= kMaxPasswords) {
      return where + ": more than " + std::to_string(kMaxPasswords) + " passwords";
    } else {
      add_digest(u, d);
    }
  } else if (same_name(w, "nopass")) {
    u->passwords.clear();
    u->nopass = true;
  } else if (same_name(w, "resetpass")) {
    u->passwords.clear();
    u->nopass = false;
  } else if (same_name(w, "reset")) {
    u->enabled = false;
    u->passwords.clear();
    u->nopass = false;
    u->commands.reset();
  } else if (same_name(w, "allcommands")) {
    u->commands |= catalog.all();
  } else if (same_name(w, "nocommands")) {
    u->commands.reset();
  } else if ((w[0] == '+' || w[0] == '-') && w.size() > 1) {
    bool add = w[0] == '+';
    std::string_view what = w.substr(1);
    CommandSet s;
    if (what[0] == '@') {
      const CategoryInfo* cat = find_category(what.substr(1));
      if (cat == nullptr) {
        return where + ": unknown category '" + truncated(what) + "' (ACL CAT lists them)";
      }
      s = catalog.in(cat->bits);
    } else if (what.find('|') != std::string_view::npos) {
      return where + ": subcommand rules ('" + truncated(what) + "') are not supported";
    } else {
      std::optional<size_t> id = catalog.find(what);
      if (!id) return where + ": unknown command '" + truncated(what) + "'";
      s.set(*id);
    }
    if (add) {
      u->commands |= s;
    } else {
      u->commands &= ~s;
    }
  } else if (w == "~*" || same_name(w, "allkeys") || same_name(w, "resetkeys") || w == "&*" ||
             same_name(w, "allchannels") || same_name(w, "resetchannels")) {
    // Redis's key and channel rules: ticketd has neither, so only the "everything" and
    // "reset" forms are accepted (files written for Redis often carry them).
  } else if (w[0] == '~' || w[0] == '%' || w[0] == '&') {
    return where + ": key and channel patterns are not supported (ticketd has neither keys nor "
                   "channels; only ~*, allkeys, &*, allchannels)";
  } else {
    // Not echoed: a password missing its '>' would otherwise end up in the log.
    return where + " is not a rule ticketd knows (on, off, >password, <password, #sha256, "
                   "!sha256, nopass, resetpass, reset, +@category, -@category, +command, "
                   "-command, allcommands, nocommands)";
  }
  return "";
}

}  // namespace

bool parse_acl(std::string_view text, const CommandCatalog& catalog, std::vector<User>* out,
               std::string* err) {
  std::vector<User> users;
  size_t lineno = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.size() - pos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::string at = "line " + std::to_string(lineno) + ": ";
    if (line.find('\0') != std::string_view::npos) {
      *err = at + "a NUL byte";
      return false;
    }
    std::vector<std::string_view> w = words(line);
    if (w.empty() || w[0][0] == '#') continue;  // blank, or a comment
    if (!same_name(w[0], "user")) {
      *err = at + "a line starts with 'user' (user NAME rules...), not '" + truncated(w[0]) + "'";
      return false;
    }
    if (w.size() < 2) {
      *err = at + "'user' needs a name";
      return false;
    }
    std::string why = check_user_name(w[1]);
    if (!why.empty()) {
      *err = at + why;
      return false;
    }
    for (const User& u : users) {
      if (u.name == w[1]) {
        *err = at + "duplicate user '" + std::string(w[1]) + "'";
        return false;
      }
    }
    if (users.size() >= kMaxUsers) {
      *err = at + "more than " + std::to_string(kMaxUsers) + " users";
      return false;
    }
    User u;
    u.name.assign(w[1]);
    for (size_t i = 2; i < w.size(); ++i) {
      why = apply_rule(w[i], i + 1, catalog, &u);
      if (!why.empty()) {
        *err = at + "user '" + u.name + "', " + why;
        return false;
      }
    }
    users.push_back(std::move(u));
  }
  *out = std::move(users);
  return true;
}

bool User::password_matches(std::string_view password) const {
  Digest d = sha256(password);
  bool match = false;
  for (const Digest& p : passwords) match |= equal_constant_time(d, p);
  return match;
}

bool UserTable::build(const CommandCatalog& catalog, const std::optional<Digest>& requirepass,
                      const std::optional<std::string_view>& acl_text, UserTable* out,
                      std::string* err) {
  std::vector<User> users;
  if (acl_text && !parse_acl(*acl_text, catalog, &users, err)) return false;
  auto it = std::find_if(users.begin(), users.end(),
                         [](const User& u) { return u.name == kDefaultUser; });
  if (it != users.end() && requirepass) {
    *err = "--requirepass and the ACL file's user 'default' both set the default user's "
           "password: keep one";
    return false;
  }
  if (it == users.end()) {
    User d;
    d.name.assign(kDefaultUser);
    if (requirepass) {
      d.enabled = true;
      d.passwords.push_back(*requirepass);
      d.commands = catalog.all();
    } else if (!acl_text) {
      // Redis's default: on, nopass, every command (protected mode guards it).
      d.enabled = true;
      d.nopass = true;
      d.commands = catalog.all();
    }  // else: off; an ACL file that names no default user gives it nothing
    users.insert(users.begin(), std::move(d));
  }
  UserTable t;
  for (User& u : users) {
    u.id = static_cast<uint32_t>(t.users_.size());
    t.users_.push_back(std::make_unique<User>(std::move(u)));
  }
  *out = std::move(t);
  return true;
}

const User* UserTable::find(std::string_view name) const {
  for (const auto& u : users_) {
    if (u->name == name) return u.get();
  }
  return nullptr;
}

const User* UserTable::authenticate(std::string_view name, std::string_view password) const {
  const User* u = find(name);
  if (u == nullptr) {
    // As much work as a known name: an answer's timing does not tell which names exist.
    static const User kNobody{};
    (void)kNobody.password_matches(password);
    return nullptr;
  }
  bool match = u->password_matches(password);
  if (!u->enabled) return nullptr;
  return u->nopass || match ? u : nullptr;
}

const User* UserTable::implicit_user() const {
  const User* d = find(kDefaultUser);
  return d != nullptr && d->enabled && d->nopass ? d : nullptr;
}

}  // namespace ticketd::auth
