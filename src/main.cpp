// ticketd: hands out unique, strictly increasing 64-bit tickets over the Redis protocol.
#include <signal.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "ticketd/io/loop.h"
#include "ticketd/server/server.h"

#ifdef TICKETD_WITH_MIMALLOC
#include <mimalloc.h>
#endif

#ifndef TICKETD_VERSION
#define TICKETD_VERSION "0.1.0"
#endif

namespace {

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "ticketd: %s\nRun with --help for usage.\n", msg.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using ticketd::server::ServerOptions;
  ServerOptions opts;
  std::string durability = "high";

  CLI::App app{"ticketd: unique, strictly increasing 64-bit tickets over the Redis protocol"};
  app.set_version_flag("--version", std::string("ticketd ") + TICKETD_VERSION);
  app.add_option("--id", opts.id, "node id (a positive integer, unique in the cluster)")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 62));
  app.add_option("--saddr", opts.saddr, "client (RESP) listen address, host:port or :port")
      ->capture_default_str();
  app.add_option("--raddr", opts.raddr, "raft peer listen address, host:port or :port")
      ->capture_default_str();
  app.add_option("--join", opts.join, "address of a cluster member to join");
  app.add_flag("--no-bootstrap", opts.no_bootstrap,
               "do not found a cluster on a fresh data directory: wait until a leader adds this "
               "node with RAFT.ADDVOTER");
  app.add_option("--dir", opts.dir, "data directory (the node keeps its data in <dir>/<id>/)")
      ->capture_default_str();
  app.add_option("--durability", durability,
                 "high: ack after fdatasync; medium: ack after the write reaches the device, "
                 "fdatasync every 200 ms; low: ack from memory, write + fdatasync every 200 ms")
      ->capture_default_str()
      ->check(CLI::IsMember({"high", "medium", "low"}));
  app.add_option("--threads", opts.threads, "shard threads (default: online CPUs)")
      ->check(CLI::Range(1u, 256u));
  app.add_option("--maxclients", opts.max_clients, "maximum client connections")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000000u));
  app.add_option("--max-sequences", opts.max_sequences,
                 "most sequences TICKET.CREATE may make, `default` included (the snapshot holds "
                 "them all: ~33 bytes each with short names)")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{100000}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  if (!ticketd::server::parse_durability(durability, &opts.durability)) {
    return usage_error("bad --durability '" + durability + "' (want high, medium or low)");
  }
  std::string host;
  uint16_t port = 0;
  if (!ticketd::io::parse_host_port(opts.saddr, &host, &port)) {
    return usage_error("bad --saddr '" + opts.saddr + "' (want host:port or :port)");
  }
  if (!ticketd::io::parse_host_port(opts.raddr, &host, &port)) {
    return usage_error("bad --raddr '" + opts.raddr + "' (want host:port or :port)");
  }
  if (!opts.join.empty()) {
    if (!ticketd::io::parse_host_port(opts.join, &host, &port)) {
      return usage_error("bad --join '" + opts.join + "' (want host:port or :port)");
    }
  }
  if (opts.dir.empty()) return usage_error("--dir must not be empty");

  // Every client is a file descriptor: allow as many as the hard limit lets us.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  // SIGTERM/SIGINT are taken synchronously by this thread (sigwait); the shards never see them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ticketd::server::Server server(opts);
  std::string err;
  if (!server.start(&err)) {
    std::fprintf(stderr, "ticketd: cannot start: %s\n", err.c_str());
    return 1;
  }
  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "ticketd: signal %d: stopping\n", sig);
  server.stop();
  return 0;
}
