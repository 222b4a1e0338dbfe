#include "client_auth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "commands.h"
#include "node.h"

namespace ticketd::server {

namespace {

constexpr size_t kMaxAclFileBytes = 16u << 20;

bool read_acl_file(const std::string& path, std::string* text, bool* shared, std::string* err) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = "cannot open --aclfile " + path + ": " + std::strerror(errno);
    return false;
  }
  struct stat st{};
  if (::fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) > kMaxAclFileBytes) {
    ::close(fd);
    *err = "--aclfile " + path + " is not a regular file of at most 16 MiB";
    return false;
  }
  *shared = (st.st_mode & 077) != 0;
  text->clear();
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *err = "cannot read --aclfile " + path + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    text->append(buf, static_cast<size_t>(n));
    if (text->size() > kMaxAclFileBytes) {
      *err = "--aclfile " + path + " grew past 16 MiB while it was read";
      ::close(fd);
      return false;
    }
  }
  ::close(fd);
  return true;
}

}  // namespace

bool load_users(const ServerOptions& o, auth::UserTable* out, std::string* summary,
                std::string* err) {
  std::string text;
  bool shared = false;
  if (!o.aclfile.empty() && !read_acl_file(o.aclfile, &text, &shared, err)) return false;
  std::optional<std::string_view> acl;
  if (!o.aclfile.empty()) acl = text;
  bool ok = auth::UserTable::build(Commands::catalog(), o.requirepass, acl, out, err);
  auth::wipe(text);  // it may hold >passwords in clear
  if (!ok) {
    if (!o.aclfile.empty() && err->rfind("line ", 0) == 0) *err = "--aclfile " + o.aclfile + ", " + *err;
    return false;
  }
  if (!o.aclfile.empty()) {
    *summary = "clients: " + std::to_string(out->size()) + " user(s) from " + o.aclfile;
    const auth::User* d = out->find(auth::kDefaultUser);
    if (d == nullptr || !d->enabled) *summary += ", the default user off";
    if (shared) *summary += " (warning: readable by group or others; chmod 600 it)";
  } else if (o.requirepass) {
    *summary = "clients: the default user needs a password (AUTH)";
  } else {
    *summary = "clients: no password";
  }
  if (out->default_is_open()) {
    *summary += o.protected_mode
                    ? "; protected mode: only loopback clients are accepted"
                    : "; --protected-mode no: any client that reaches the port runs every command";
  }
  return true;
}

namespace {
void count(Node& node, const auth::User* u, int delta) {
  std::atomic<uint64_t>& n =
      u == nullptr ? node.unauthenticated_clients() : node.user_clients(u->id);
  if (delta > 0) {
    n.fetch_add(1, std::memory_order_relaxed);
  } else {
    n.fetch_sub(1, std::memory_order_relaxed);
  }
}
}  // namespace

void set_user(Node& node, Connection* c, const auth::User* user) {
  if (c->user_counted) count(node, c->user, -1);
  c->user = user;
  c->user_counted = true;
  count(node, user, +1);
  c->may_ticket = user != nullptr && user->may_run(Commands::ticket_id());
}

void forget_user(Node& node, Connection* c) {
  if (c->user_counted) count(node, c->user, -1);
  c->user_counted = false;
}

}  // namespace ticketd::server
