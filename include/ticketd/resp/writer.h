// RESP2 reply encoder: appends complete replies to a caller-owned std::string.
// It never allocates beyond `out`'s own growth (reserve it once per connection) and never
// emits bytes that could break the framing: CR/LF inside simple strings and errors become spaces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ticketd::resp {

// "+<s>\r\n". CR and LF in `s` are replaced by spaces.
void append_simple(std::string& out, std::string_view s);
// "-<s>\r\n"; `s` comes without the '-' (e.g. "ERR unknown command 'x'"). CR/LF become spaces,
// as Redis does for error replies.
void append_error(std::string& out, std::string_view s);
// ":<v>\r\n"
void append_integer(std::string& out, int64_t v);
// "$<len>\r\n<bytes>\r\n" (binary safe).
void append_bulk(std::string& out, std::string_view bytes);
// "$-1\r\n": the null bulk string.
void append_null(std::string& out);
// "*-1\r\n": the null array.
void append_null_array(std::string& out);
// "*<n>\r\n": the caller then appends n replies.
void append_array_header(std::string& out, size_t n);
// "+<v>\r\n": the TICKET reply (redis-cli prints the bare number).
void append_simple_u64(std::string& out, uint64_t v);
// ":<v>\r\n" for an unsigned value (a ticket; past 2^63-1 only a client that reads integers
// as unbounded, like redis-py, takes it).
void append_integer_u64(std::string& out, uint64_t v);

}  // namespace ticketd::resp
