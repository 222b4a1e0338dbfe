#include "ticketd/metrics/http.h"

#include <cctype>

namespace ticketd::metrics {

namespace {

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool is_token_char(char ch) {
  // RFC 9110 tchar.
  if (std::isalnum(static_cast<unsigned char>(ch))) return true;
  switch (ch) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

HttpRequest bad(int code, std::string_view why) {
  HttpRequest r;
  r.status = HttpRequest::Status::kBad;
  r.error_code = code;
  r.why = why;
  return r;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

HttpRequest parse_http_request(std::string_view buf) {
  // The head ends at the first empty line (CRLF CRLF; a bare LF is accepted as a line end).
  size_t end = std::string_view::npos;
  size_t head_len = 0;
  for (size_t i = 0; i < buf.size() && i < kMaxRequestBytes; ++i) {
    if (buf[i] != '\n') continue;
    if (i >= 1 && buf[i - 1] == '\n') {
      end = i - 1;
      head_len = i + 1;
      break;
    }
    if (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n') {
      end = i - 2;
      head_len = i + 1;
      break;
    }
  }
  if (end == std::string_view::npos) {
    if (buf.size() >= kMaxRequestBytes) return bad(431, "request head too large");
    // A request line that is already wrong need not wait for the rest.
    for (size_t i = 0; i < buf.size(); ++i) {
      char ch = buf[i];
      if (ch == '\r' || ch == '\n') break;
      if (ch == 0 || (static_cast<unsigned char>(ch) < 0x20 && ch != '\t') || ch == 0x7f) {
        return bad(400, "control character in the request line");
      }
    }
    return HttpRequest{};
  }
  (void)head_len;
  std::string_view head = buf.substr(0, end);
  // Request line: METHOD SP TARGET SP HTTP/1.x
  size_t eol = head.find('\n');
  std::string_view line = head.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return bad(400, "malformed request line");
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return bad(400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  for (char ch : method) {
    if (!is_token_char(ch)) return bad(400, "malformed method");
  }
  for (char ch : target) {
    auto u = static_cast<unsigned char>(ch);
    if (u <= 0x20 || u >= 0x7f) return bad(400, "malformed request target");
  }
  if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || !std::isdigit(static_cast<unsigned char>(version[7]))) {
    if (version.substr(0, 5) == "HTTP/") return bad(505, "only HTTP/1.x is served");
    return bad(400, "malformed HTTP version");
  }
  HttpRequest r;
  r.method = method;
  r.minor_version = version[7] - '0';
  size_t q = target.find('?');
  r.path = target.substr(0, q);
  if (r.path == "*") {
    // Asterisk-form is for a server-wide OPTIONS, which is not served (GET and HEAD only).
    if (method == "OPTIONS") return bad(405, "only GET and HEAD are served");
    return bad(400, "an asterisk-form target is only for OPTIONS");
  }
  if (r.path.empty() || r.path.front() != '/') {
    // Absolute-form (http://host/metrics) is allowed by HTTP/1.1: keep its path.
    size_t scheme = ieq(target.substr(0, 7), "http://") ? 7 : ieq(target.substr(0, 8), "https://") ? 8 : 0;
    if (scheme == 0) return bad(400, "malformed request target");
    std::string_view rest = target.substr(scheme, q == std::string_view::npos ? std::string_view::npos : q - scheme);
    size_t slash = rest.find('/');
    r.path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  }
  // Header fields: NAME ":" VALUE; no obsolete line folding.
  size_t headers = 0;
  bool host = false;
  std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 1);
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view h = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (!h.empty() && h.back() == '\r') h.remove_suffix(1);
    if (h.empty()) continue;
    if (++headers > kMaxHeaders) return bad(431, "too many header fields");
    if (h.front() == ' ' || h.front() == '\t') return bad(400, "obsolete line folding");
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return bad(400, "malformed header field");
    std::string_view name = h.substr(0, colon);
    for (char ch : name) {
      if (!is_token_char(ch)) return bad(400, "malformed header field name");
    }
    std::string_view value = trim(h.substr(colon + 1));
    for (char ch : value) {
      auto u = static_cast<unsigned char>(ch);
      if ((u < 0x20 && ch != '\t') || u == 0x7f) return bad(400, "control character in a header field");
    }
    if (ieq(name, "Host")) host = true;
    if (ieq(name, "Transfer-Encoding")) return bad(400, "a request body is not accepted");
    if (ieq(name, "Content-Length") && value != "0") return bad(400, "a request body is not accepted");
  }
  if (r.minor_version >= 1 && !host) return bad(400, "HTTP/1.1 request without Host");
  r.status = HttpRequest::Status::kOk;
  return r;
}

HttpRoute route_http_request(const HttpRequest& r) {
  HttpRoute route;
  bool get = r.method == "GET";
  bool head = r.method == "HEAD";
  if (!get && !head) {
    route.status = 405;
    return route;
  }
  route.head = head;
  if (r.path == "/metrics") {
    route.status = 200;
    route.metrics = true;
  } else if (r.path == "/") {
    route.status = 200;
  } else {
    route.status = 404;
  }
  return route;
}

std::string_view http_reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

std::string http_response(int status, std::string_view content_type, std::string_view body,
                          bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
  out += http_reason(status);
  out += "\r\nContent-Type: ";
  out += content_type;
  out += "\r\nContent-Length: " + std::to_string(body.size());
  if (status == 405) out += "\r\nAllow: GET, HEAD";
  out += "\r\nConnection: close\r\n\r\n";
  if (!head_only) out += body;
  return out;
}

}  // namespace ticketd::metrics
