// libFuzzer target for the metrics endpoint's HTTP request parser (src/metrics/http.cpp):
// anyone who can reach --metrics-addr can send it anything.
// Input: the bytes a client sends, fed whole and also in two pieces split at the first byte.
// Traps on: a crash or a read past the input (ASan); a refusal without a 4xx/5xx status or a
// reason; an accepted request with an empty method or a path not starting with '/'; a view
// that does not point into the input (but the "/" of an absolute-form target without a path); a complete request whose prefix parses as complete
// with a different result (the parser must not depend on what comes after the head); an
// incomplete verdict on input already past the size bound.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ticketd/metrics/http.h"

namespace {

void require(bool cond) {
  if (!cond) __builtin_trap();
}

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ticketd::metrics::HttpRequest;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  HttpRequest r = ticketd::metrics::parse_http_request(in);
  switch (r.status) {
    case HttpRequest::Status::kBad:
      require(r.error_code >= 400 && r.error_code < 600 && !r.why.empty());
      break;
    case HttpRequest::Status::kOk: {
      require(!r.method.empty() && !r.path.empty() && r.path.front() == '/');
      require(inside(r.method, in) && (inside(r.path, in) || r.path == "/"));  // http://host
      ticketd::metrics::HttpRoute route = ticketd::metrics::route_http_request(r);
      require(route.status == 200 || route.status == 404 || route.status == 405);
      break;
    }
    case HttpRequest::Status::kIncomplete:
      require(size < ticketd::metrics::kMaxRequestBytes);
      break;
  }
  // The first piece alone: a verdict reached there must not change when more bytes follow.
  size_t cut = size == 0 ? 0 : data[0] % (size + 1);
  HttpRequest first = ticketd::metrics::parse_http_request(in.substr(0, cut));
  if (first.status == HttpRequest::Status::kOk) {
    require(r.status == HttpRequest::Status::kOk && r.method == first.method && r.path == first.path);
  }
  std::string rsp = ticketd::metrics::http_response(r.error_code == 0 ? 200 : r.error_code,
                                                    "text/plain", r.why, false);
  require(rsp.compare(0, 9, "HTTP/1.1 ") == 0);
  return 0;
}
