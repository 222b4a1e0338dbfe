#include "ticketd/metrics/http.h"
#include "ticketd/metrics/exposition.h"

#include <gtest/gtest.h>

#include <random>

namespace ticketd::metrics {
namespace {

using S = HttpRequest::Status;

TEST(HttpRequest, APrometheusScrape) {
  std::string req =
      "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nUser-Agent: Prometheus/2.42.0\r\n"
      "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n"
      "Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
  HttpRequest r = parse_http_request(req);
  ASSERT_EQ(r.status, S::kOk);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/metrics");
  HttpRoute route = route_http_request(r);
  EXPECT_EQ(route.status, 200);
  EXPECT_TRUE(route.metrics);
  // Every prefix of it is incomplete, never bad.
  for (size_t n = 0; n < req.size(); ++n) {
    EXPECT_EQ(parse_http_request(std::string_view(req).substr(0, n)).status, S::kIncomplete) << n;
  }
}

TEST(HttpRequest, CurlAndHttp10AndQueries) {
  HttpRequest r = parse_http_request("GET /metrics?x=1 HTTP/1.0\n\n");
  ASSERT_EQ(r.status, S::kOk);
  EXPECT_EQ(r.path, "/metrics");
  EXPECT_EQ(r.minor_version, 0);
  r = parse_http_request("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(r.status, S::kOk);
  EXPECT_TRUE(route_http_request(r).head);
  r = parse_http_request("GET http://h:1/metrics HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(r.status, S::kOk);
  EXPECT_EQ(r.path, "/metrics");
  EXPECT_EQ(route_http_request(parse_http_request("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")).status, 404);
  EXPECT_EQ(route_http_request(parse_http_request("POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")).status, 405);
}

TEST(HttpRequest, RefusesMalformedRequestsWith4xx) {
  struct Case {
    const char* req;
    int code;
  };
  const Case cases[] = {
      {"\r\n\r\n", 400},
      {"GET\r\n\r\n", 400},
      {"GET /metrics\r\n\r\n", 400},
      {"GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"GET /metrics FTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\n\r\n", 400},  // no Host
      {"GET /met rics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nHo st: x\r\n\r\n", 400},
      // Found by fuzz_http_request: "://" alone made an absolute-form target.
      {"GET ET%://ZZ HTTP/1.0\r\n\r\n", 400},
      // Found by fuzz_http_request in CI: "*" was accepted as a path that is not "/...".
      {"GET * HTTP/1.0\r\n\r\n", 400},
      {"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 405},
  };
  for (const Case& c : cases) {
    HttpRequest r = parse_http_request(c.req);
    EXPECT_EQ(r.status, S::kBad) << c.req;
    EXPECT_EQ(r.error_code, c.code) << c.req;
  }
  // A control byte in the request line is refused before the head is complete.
  std::string nul("GET /\0x", 7);
  EXPECT_EQ(parse_http_request(nul).status, S::kBad);
}

TEST(HttpRequest, BoundsTheHead) {
  std::string big = "GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + std::string(kMaxRequestBytes, 'a');
  HttpRequest r = parse_http_request(big);
  EXPECT_EQ(r.status, S::kBad);
  EXPECT_EQ(r.error_code, 431);
  std::string many = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
  for (size_t i = 0; i < kMaxHeaders + 1; ++i) many += "A: b\r\n";
  many += "\r\n";
  r = parse_http_request(many);
  EXPECT_EQ(r.status, S::kBad);
  EXPECT_EQ(r.error_code, 431);
}

TEST(HttpRequest, RandomBytesNeverCrashAndNeverPassUnchecked) {
  std::mt19937 rng(11);
  const std::string alphabet = "GET /metrics HTTP/1.1\r\n:Host \t\0\x7f\xff?";
  for (int k = 0; k < 20000; ++k) {
    std::string s;
    size_t n = rng() % 200;
    for (size_t i = 0; i < n; ++i) s += alphabet[rng() % alphabet.size()];
    HttpRequest r = parse_http_request(s);
    if (r.status == S::kBad) {
      EXPECT_GE(r.error_code, 400);
      EXPECT_LT(r.error_code, 600);
    }
    if (r.status == S::kOk) {
      EXPECT_FALSE(r.method.empty());
      EXPECT_FALSE(r.path.empty());
    }
  }
}

TEST(HttpResponse, HeadersAndBody) {
  std::string r = http_response(200, kExpositionContentType, "a 1\n", false);
  EXPECT_EQ(r, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
               "Content-Length: 4\r\nConnection: close\r\n\r\na 1\n");
  r = http_response(405, "text/plain", "no\n", true);
  EXPECT_NE(r.find("Allow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_EQ(r.find("no\n"), std::string::npos);
}

TEST(TextExposition, FamiliesSamplesAndEscaping) {
  TextExposition e;
  e.family("ticketd_raft_term", "gauge", "The current term.");
  e.sample("ticketd_raft_term", {}, 7);
  e.family("ticketd_peer_up", "gauge", "Link state \\ per peer.");
  e.sample("ticketd_peer_up", {{"peer", "2"}, {"addr", "a\"b\\c\nd"}}, 1);
  e.sample("ticketd_x", {}, 0.25);
  EXPECT_EQ(e.text(),
            "# HELP ticketd_raft_term The current term.\n# TYPE ticketd_raft_term gauge\n"
            "ticketd_raft_term 7\n"
            "# HELP ticketd_peer_up Link state \\\\ per peer.\n# TYPE ticketd_peer_up gauge\n"
            "ticketd_peer_up{peer=\"2\",addr=\"a\\\"b\\\\c\\nd\"} 1\n"
            "ticketd_x 0.25\n");
}

TEST(TextExposition, HistogramIsCumulativeInSeconds) {
  LatencyHistogram h;
  h.record(500'000, 3);      // 0.5 ms
  h.record(2'000'000, 1);    // 2 ms
  h.record(90'000'000'000);  // 90 s: only +Inf
  HistogramCounts c;
  c.add(h);
  TextExposition e;
  const double le[] = {0.001, 0.005};
  const Label ls[] = {{"node", "1"}};
  e.histogram("lat_seconds", ls, c, 3 * 500'000 + 2'000'000 + 90'000'000'000ull, le, 1e9);
  EXPECT_EQ(e.text(),
            "lat_seconds_bucket{node=\"1\",le=\"0.001\"} 3\n"
            "lat_seconds_bucket{node=\"1\",le=\"0.005\"} 4\n"
            "lat_seconds_bucket{node=\"1\",le=\"+Inf\"} 5\n"
            "lat_seconds_sum{node=\"1\"} 90.0035\n"
            "lat_seconds_count{node=\"1\"} 5\n");
}

}  // namespace
}  // namespace ticketd::metrics
