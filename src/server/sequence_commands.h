// The named-sequence commands of the command table (issue 11): TICKET name, TICKET.BLOCK,
// TICKET.CREATE/DROP/FLOOR/LIST/INFO/LAST, and their COMMAND DOCS entries.
// Promises: every argument is checked here, on the client's shard, before anything travels:
// ticket requests join the shard's batch (Shard::queue_sequence_request), the rest run on
// shard 0 (Shard::submit_admin) where the sequences live. Never: creates a sequence that was
// not asked for by TICKET.CREATE.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace ticketd::server {

class Shard;
struct Connection;

namespace sequences {

using Args = std::span<const std::string_view>;

void cmd_ticket(Shard& s, Connection* c, Args args, std::string& out);  // TICKET name
void cmd_block(Shard& s, Connection* c, Args args, std::string& out);   // TICKET.BLOCK
void cmd_create(Shard& s, Connection* c, Args args, std::string& out);  // TICKET.CREATE
void cmd_floor(Shard& s, Connection* c, Args args, std::string& out);   // TICKET.FLOOR
void cmd_drop(Shard& s, Connection* c, Args args, std::string& out);    // TICKET.DROP
void cmd_list(Shard& s, Connection* c, Args args, std::string& out);    // TICKET.LIST
void cmd_info(Shard& s, Connection* c, Args args, std::string& out);    // TICKET.INFO
void cmd_last(Shard& s, Connection* c, Args args, std::string& out);    // TICKET.LAST

// A Redis-style signed 64-bit integer argument ("-5", "0", "42"; no '+', spaces or leading
// zeros), as Redis's string2ll reads it.
bool parse_i64(std::string_view s, int64_t* v);

// COMMAND DOCS: the commands documented here, and appending one's entry (its name, then its
// doc map, flat as RESP2 sends a map). append_docs is false (and appends nothing) for a name
// without docs.
size_t docs_count();
std::string_view docs_name(size_t i);
bool append_docs(std::string& out, std::string_view name);

}  // namespace sequences
}  // namespace ticketd::server
