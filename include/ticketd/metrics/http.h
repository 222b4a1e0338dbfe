// The little HTTP/1.x that a Prometheus scrape needs: parse one request head, write one
// response. Promises: never reads past the bytes given, bounds what it accepts
// (kMaxRequestBytes, header count), answers every malformed request with a 4xx status, never
// crashes. Never: keeps a connection alive, reads a body, touches a socket.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ticketd::metrics {

inline constexpr size_t kMaxRequestBytes = 8192;  // the whole head, request line included
inline constexpr size_t kMaxHeaders = 64;

struct HttpRequest {
  enum class Status { kIncomplete, kOk, kBad };
  Status status = Status::kIncomplete;
  int error_code = 0;     // kBad: the 4xx to answer (400, 405, 413, 431, 501, 505)
  std::string_view why;   // kBad: a short static reason
  std::string_view method;
  std::string_view path;  // the target without its query string
  int minor_version = 1;  // HTTP/1.<minor>
};

// Parses the head at the front of `buf` (a request is complete at its blank line). A request
// that announces a body (Content-Length > 0, Transfer-Encoding) is refused: GET has none.
HttpRequest parse_http_request(std::string_view buf);

// What the server answers: GET or HEAD of `/metrics` (200, the exposition), `/` (200, a
// pointer to /metrics), anything else 404; other methods 405.
struct HttpRoute {
  int status = 404;
  bool metrics = false;  // the body is the exposition
  bool head = false;     // HEAD: headers only
};
HttpRoute route_http_request(const HttpRequest& r);

// A complete response with `Connection: close`. `content_type` for 200 (the exposition's is
// kExpositionContentType); errors get a text/plain reason.
std::string http_response(int status, std::string_view content_type, std::string_view body,
                          bool head_only);
std::string_view http_reason(int status);

inline constexpr std::string_view kExpositionContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace ticketd::metrics
