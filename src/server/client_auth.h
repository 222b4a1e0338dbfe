// Client authentication: the node's users (from --requirepass and --aclfile) and who each
// connection is logged in as. Promises: a connection's permission check is a bit test on
// its user (and one bool for the TICKET fast path); counts of clients per user for INFO.
// Never: logs a password, a digest or the ACL file's text.
#pragma once

#include <string>

#include "ticketd/auth/acl.h"
#include "ticketd/server/options.h"

namespace ticketd::server {

class Node;
struct Connection;

// Reads --aclfile (if any) and builds the users against the command table. *summary says
// in one line how clients are authenticated (for the start-up log). False with *err.
bool load_users(const ServerOptions& o, auth::UserTable* out, std::string* summary,
                std::string* err);

// Makes `user` (null: nobody, not yet authenticated) the connection's user and keeps the
// per-user client counts. `counted` is false for a connection that was not counted yet.
void set_user(Node& node, Connection* c, const auth::User* user);
// The connection is closing: it leaves its user's count.
void forget_user(Node& node, Connection* c);

}  // namespace ticketd::server
