// ticketd: hands out unique, strictly increasing 64-bit tickets over the Redis protocol.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "ticketd/auth/digest.h"
#include "ticketd/base/log.h"
#include "ticketd/server/config_params.h"

#include "ticketd/io/loop.h"
#include "ticketd/server/server.h"
#include "ticketd/tickets/state_machine.h"

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

// A file that holds a secret should be mode 600.
void warn_if_readable(const std::string& flag, const std::string& path, int fd = -1) {
  struct stat st{};
  int r = fd >= 0 ? ::fstat(fd, &st) : ::stat(path.c_str(), &st);
  if (r == 0 && (st.st_mode & 077) != 0) {
    std::fprintf(stderr, "ticketd: warning: %s %s is readable by group or others (chmod 600 it)\n",
                 flag.c_str(), path.c_str());
  }
}

// The first line of a secret file (without its line end). False with *err; the secret's
// text is never part of *err.
bool read_secret_file(const std::string& flag, const std::string& path, std::string* secret,
                      std::string* err) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = "cannot open " + flag + " " + path + ": " + std::strerror(errno);
    return false;
  }
  warn_if_readable(flag, path, fd);
  char buf[4097];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  ::close(fd);
  if (n < 0) {
    *err = "cannot read " + flag + " " + path + ": " + std::strerror(errno);
    return false;
  }
  if (n == sizeof(buf)) {
    *err = flag + " " + path + ": a password of at most 4096 bytes on the first line";
    return false;
  }
  std::string text(buf, static_cast<size_t>(n));
  ticketd::auth::wipe(buf, sizeof(buf));
  size_t end = text.find('\n');
  secret->assign(text, 0, end);
  if (!secret->empty() && secret->back() == '\r') secret->pop_back();
  ticketd::auth::wipe(text);
  return true;
}

// ps shows argv: overwrite the value of --requirepass in place (CLI11 kept its own copy).
void hide_from_ps(int argc, char** argv, const char* flag) {
  size_t fl = std::strlen(flag);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], flag) == 0 && i + 1 < argc) {
      std::memset(argv[i + 1], 'x', std::strlen(argv[i + 1]));
    } else if (std::strncmp(argv[i], flag, fl) == 0 && argv[i][fl] == '=') {
      std::memset(argv[i] + fl + 1, 'x', std::strlen(argv[i] + fl + 1));
    }
  }
}

// One password from a flag, a file or the environment (at most one of the first two).
bool choose_secret(const std::string& flag_value, bool flag_given, const std::string& file_flag,
                   const std::string& file, const char* env, std::string* out, std::string* err) {
  if (flag_given && !file.empty()) {
    *err = "give the password either on the command line or in " + file_flag + ", not both";
    return false;
  }
  if (flag_given) {
    *out = flag_value;
  } else if (!file.empty()) {
    if (!read_secret_file(file_flag, file, out, err)) return false;
  } else if (const char* e = std::getenv(env); e != nullptr && *e != '\0') {
    *out = e;  // an empty variable counts as unset
  } else {
    return true;
  }
  if (out->empty()) {
    *err = "an empty password (from " + (flag_given ? std::string("the command line")
                                        : !file.empty() ? file : std::string(env)) +
           ") would be no password";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using ticketd::server::ServerOptions;
  ServerOptions opts;
  std::string durability = "high";
  std::string requirepass, requirepass_file, protected_mode = "yes", join_password_file;
  std::string cluster_secret_file;

  CLI::App app{"ticketd: unique, strictly increasing 64-bit tickets over the Redis protocol"};
  // Every option's default is recorded, so CONFIG GET can answer the ones not given.
  app.option_defaults()->always_capture_default();
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
  app.add_flag("--force-new-cluster", opts.force_new_cluster,
               "recover from a lost majority: restart from this node's own data as the only "
               "voter of its cluster (then add members; remove this flag before the next start; "
               "see docs/OPERATIONS.md)");
  std::vector<std::string> floor_args;
  app.add_option("--floor", floor_args,
                 "NAME=N, repeatable, with --force-new-cluster: every later ticket of sequence "
                 "NAME is above N (created if this node lacks it); choose N above any ticket the "
                 "lost nodes may have handed out")
      ->allow_extra_args(false)
      ->default_str("");
  app.add_option("--dir", opts.dir, "data directory (the node keeps its data in <dir>/<id>/)")
      ->capture_default_str();
  app.add_option("--metrics-addr", opts.metrics_addr,
                 "serve Prometheus metrics (GET /metrics) on this host:port (default: none)");
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
  app.add_option("--wal-writes-in-flight", opts.wal_writes_in_flight,
                 "durable log writes in flight side by side (1 = one at a time); each is "
                 "acknowledged only once it and every write before it are durable")
      ->capture_default_str()
      ->check(CLI::Range(1u, 8u));
  app.add_option("--max-sequences", opts.max_sequences,
                 "most sequences TICKET.CREATE may make, `default` included (the snapshot holds "
                 "them all: ~33 bytes each with short names)")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{100000}));
  std::string default_mode = "dense";
  app.add_option("--default-mode", default_mode,
                 "the default sequence's mode on a fresh cluster: dense (every batch a quorum "
                 "write, no gaps) or window (reserved windows served from memory on the leader; "
                 "gaps of up to a window per leader change or crash, never a repeat). A "
                 "snapshot keeps the mode it was taken with; give every node the same")
      ->capture_default_str()
      ->check(CLI::IsMember({"dense", "window"}));
  app.add_option("--default-window", opts.default_window,
                 "with --default-mode window: the least reservation (tickets per Reserve entry)")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000000}));

  app.add_flag("--lease", opts.window_lease,
               "window sequences: release batches under the leader's lease (200 ms from the tick "
               "before a heartbeat round a quorum answered; followers refuse votes for 240 ms "
               "after hearing a leader) instead of after a quorum round each; assumes clocks run "
               "within ~15% of each other. Give every node the same");

  auto* requirepass_opt = app.add_option(
      "--requirepass", requirepass,
      "password of the default user; visible in ps while the process starts: prefer "
      "--requirepass-file or the TICKETD_REQUIREPASS environment variable");
  app.add_option("--requirepass-file", requirepass_file,
                 "file whose first line is the default user's password");
  app.add_option("--aclfile", opts.aclfile,
                 "users and their commands, a subset of Redis's ACL file: "
                 "user NAME on >password +@application (see docs/SECURITY.md)");
  app.add_option("--protected-mode", protected_mode,
                 "yes: while no password protects the default user, accept only loopback clients")
      ->capture_default_str()
      ->check(CLI::IsMember({"yes", "no"}));
  app.add_option("--join-user", opts.join_user, "user --join logs in as on the member it joins")
      ->capture_default_str();
  app.add_option("--join-password-file", join_password_file,
                 "file with --join-user's password (else TICKETD_JOIN_PASSWORD, else the "
                 "default user's password)");

  app.add_option("--cluster-secret-file", cluster_secret_file,
                 "file whose first line is the cluster secret every member holds (at least 16 "
                 "bytes, e.g. from openssl rand -hex 32): peers and RAFT.JOIN must prove it");

  // Operations (issue 14): every flag above also from a file, and the log level.
  std::string loglevel = "notice";
  app.add_option("--loglevel", loglevel,
                 "debug, verbose, notice or warning (Redis's levels; CONFIG SET loglevel "
                 "changes it while the node runs)")
      ->check(CLI::IsMember({"debug", "verbose", "notice", "warning"}, CLI::ignore_case));
  bool config_has_secret = false;
  app.set_config("--config", "",
                 "read flags from FILE, one `name = value` per line (names without dashes, "
                 "strings in quotes, flags as true/false: TOML as CLI11 reads it); flags on "
                 "the command line win over the file");
  app.config_formatter(ticketd::server::make_config_reader(app, &config_has_secret));
  app.allow_config_extras(CLI::config_extras_mode::error);
  // TLS (issue 13), with Redis's flag names.
  unsigned tls_port = 0;
  std::string tls_auth_clients = "yes", tls_cluster = "no";
  app.add_option("--tls-port", tls_port,
                 "TLS client listener on --saddr's host (0: none); with it, --saddr HOST:0 turns "
                 "the plaintext listener off")
      ->check(CLI::Range(0u, 65535u));
  app.add_option("--tls-cert-file", opts.tls_cert_file,
                 "PEM certificate (chain) this node serves to clients and presents to peers");
  app.add_option("--tls-key-file", opts.tls_key_file, "PEM private key of --tls-cert-file (unencrypted)");
  app.add_option("--tls-ca-cert-file", opts.tls_ca_cert_file,
                 "PEM CA certificate(s) client and peer certificates must chain to");
  app.add_option("--tls-auth-clients", tls_auth_clients,
                 "yes: TLS clients must present a certificate from the CA; optional: checked if "
                 "presented; no: not asked")
      ->capture_default_str()
      ->check(CLI::IsMember({"yes", "no", "optional"}));
  app.add_option("--tls-cluster", tls_cluster,
                 "yes: peer links use mutual TLS; a peer's certificate must name its node id "
                 "(SAN URI ticketd:node:<id>)")
      ->capture_default_str()
      ->check(CLI::IsMember({"yes", "no"}));
  app.add_option("--tls-handshake-timeout", opts.tls_handshake_timeout_ms,
                 "milliseconds a client's or peer's TLS handshake may take before it is closed")
      ->capture_default_str()
      ->check(CLI::Range(100u, 600000u));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const CLI::Option* cfg = app.get_config_ptr();
    if (cfg != nullptr && cfg->count() > 0) {
      std::string path = cfg->as<std::string>();
      if (dynamic_cast<const CLI::ConfigError*>(&e) != nullptr ||
          dynamic_cast<const CLI::FileError*>(&e) != nullptr) {
        return usage_error("--config " + path + ": " + e.what());
      }
      return usage_error(std::string(e.what()) + " (on the command line or in --config " + path + ")");
    }
    app.exit(e);
    return 2;
  }
  ticketd::logging::Level level = ticketd::logging::Level::kNotice;
  ticketd::logging::parse_level(loglevel, &level);
  ticketd::logging::set_level(level);
  opts.config_params = ticketd::server::describe_options(app);
  if (config_has_secret) warn_if_readable("--config", app.get_config_ptr()->as<std::string>());

  if (!ticketd::server::parse_durability(durability, &opts.durability)) {
    return usage_error("bad --durability '" + durability + "' (want high, medium or low)");
  }
  std::string host;
  uint16_t port = 0;
  opts.tls_port = static_cast<uint16_t>(tls_port);
  opts.tls_cluster = tls_cluster == "yes";
  opts.tls_auth_clients = tls_auth_clients == "no" ? ServerOptions::TlsAuthClients::kNo
                          : tls_auth_clients == "optional" ? ServerOptions::TlsAuthClients::kOptional
                                                           : ServerOptions::TlsAuthClients::kYes;
  bool plaintext_off = opts.tls_port != 0 && opts.saddr.size() >= 2 &&
                       opts.saddr.compare(opts.saddr.size() - 2, 2, ":0") == 0 &&
                       ticketd::io::parse_host_port(ticketd::server::client_address(opts), &host, &port);
  if (!plaintext_off && !ticketd::io::parse_host_port(opts.saddr, &host, &port)) {
    return usage_error("bad --saddr '" + opts.saddr + "' (want host:port or :port" +
                       (opts.tls_port != 0 ? ", or HOST:0 for no plaintext listener)" : ")"));
  }
  if (ticketd::server::tls_enabled(opts)) {
    for (const auto& [flag, value] : {std::pair<const char*, const std::string&>{
                                          "--tls-cert-file", opts.tls_cert_file},
                                      {"--tls-key-file", opts.tls_key_file},
                                      {"--tls-ca-cert-file", opts.tls_ca_cert_file}}) {
      if (value.empty()) {
        return usage_error(std::string(flag) + " is required with --tls-port or --tls-cluster yes");
      }
    }
  }
  if (opts.tls_port != 0 && !plaintext_off && port == opts.tls_port) {
    return usage_error("--tls-port " + std::to_string(opts.tls_port) +
                       " is --saddr's port: give each listener its own");
  }
  if (!ticketd::io::parse_host_port(opts.raddr, &host, &port)) {
    return usage_error("bad --raddr '" + opts.raddr + "' (want host:port or :port)");
  }
  if (opts.tls_port != 0 && port == opts.tls_port) {
    return usage_error("--tls-port " + std::to_string(opts.tls_port) +
                       " is --raddr's port: give each listener its own");
  }
  if (!opts.join.empty()) {
    if (!ticketd::io::parse_host_port(opts.join, &host, &port)) {
      return usage_error("bad --join '" + opts.join + "' (want host:port or :port)");
    }
  }
  if (!opts.metrics_addr.empty()) {
    uint16_t sport = 0, rport = 0;
    std::string h;
    ticketd::io::parse_host_port(opts.saddr, &h, &sport);
    ticketd::io::parse_host_port(opts.raddr, &h, &rport);
    if (!ticketd::io::parse_host_port(opts.metrics_addr, &host, &port) || port == 0) {
      return usage_error("bad --metrics-addr '" + opts.metrics_addr + "' (want host:port or :port)");
    }
    if (port == sport || port == rport || port == opts.tls_port) {
      return usage_error("--metrics-addr port " + std::to_string(port) +
                         " is another listener's: give each listener its own");
    }
  }
  if (opts.dir.empty()) return usage_error("--dir must not be empty");
  for (const std::string& f : floor_args) {
    size_t eq = f.rfind('=');
    ticketd::server::ServerOptions::Floor fl;
    if (eq == std::string::npos) return usage_error("bad --floor '" + f + "' (want NAME=N)");
    fl.name = f.substr(0, eq);
    std::string bad = ticketd::tickets::check_name(fl.name);
    if (!bad.empty()) return usage_error("bad --floor '" + f + "': " + bad);
    std::string num = f.substr(eq + 1);
    // A START is at most 2^63-1, and the sequence's next ticket is N + 1.
    constexpr uint64_t kMaxFloor = (uint64_t{1} << 63) - 2;
    errno = 0;
    char* end = nullptr;
    unsigned long long v = num.empty() || num[0] == '-' ? 0 : std::strtoull(num.c_str(), &end, 10);
    if (num.empty() || num[0] == '-' || end == nullptr || *end != '\0' || errno == ERANGE || v > kMaxFloor) {
      return usage_error("bad --floor '" + f + "': N must be an integer from 0 to " + std::to_string(kMaxFloor));
    }
    fl.value = v;
    for (const auto& other : opts.floors) {
      if (other.name == fl.name) return usage_error("--floor " + fl.name + " given twice");
    }
    opts.floors.push_back(fl);
  }
  if (!opts.floors.empty() && !opts.force_new_cluster) {
    return usage_error("--floor is applied only with --force-new-cluster (a running cluster "
                       "takes TICKET.FLOOR name n)");
  }
  if (opts.force_new_cluster && opts.no_bootstrap) {
    return usage_error("--force-new-cluster and --no-bootstrap contradict each other");
  }

  hide_from_ps(argc, argv, "--requirepass");
  std::string err;
  std::string password;
  if (!choose_secret(requirepass, requirepass_opt->count() > 0, "--requirepass-file",
                     requirepass_file, "TICKETD_REQUIREPASS", &password, &err)) {
    return usage_error(err);
  }
  ticketd::auth::wipe(requirepass);
  if (!password.empty()) opts.requirepass = ticketd::auth::sha256(password);
  opts.protected_mode = protected_mode == "yes";
  opts.default_window_mode = default_mode == "window";
  if (!opts.join.empty()) {
    // The join logs in elsewhere, so this one secret is kept in clear (like Redis's
    // masterauth): from its own file or variable, else the default user's password.
    if (!choose_secret("", false, "--join-password-file", join_password_file,
                       "TICKETD_JOIN_PASSWORD", &opts.join_password, &err)) {
      return usage_error(err);
    }
    if (opts.join_password.empty()) opts.join_password = password;
  }
  ticketd::auth::wipe(password);
  if (!cluster_secret_file.empty()) {
    std::string secret;
    if (!read_secret_file("--cluster-secret-file", cluster_secret_file, &secret, &err)) {
      return usage_error(err);
    }
    if (secret.size() < 16) {
      ticketd::auth::wipe(secret);
      return usage_error("--cluster-secret-file " + cluster_secret_file +
                         ": a cluster secret has at least 16 bytes (openssl rand -hex 32)");
    }
    opts.cluster_secret = ticketd::auth::sha256(secret);
    ticketd::auth::wipe(secret);
  }

  // Every client is a file descriptor: allow as many as the hard limit lets us.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  // SIGTERM/SIGINT (stop) and SIGHUP (reload the TLS files) are taken synchronously by this
  // thread (sigwait); the shards never see them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ticketd::server::Server server(opts);
  if (!server.start(&err)) {
    ticketd::logging::write(ticketd::logging::Level::kWarning, opts.id, "cannot start: " + err);
    return 1;
  }
  int sig = 0;
  while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
    // The node logs the outcome (the old certificate stays in use if the new one is bad).
    if (!server.reload_tls(&err)) {
      ticketd::logging::write(ticketd::logging::Level::kWarning, opts.id, "SIGHUP: " + err);
    }
  }
  ticketd::logging::write(ticketd::logging::Level::kNotice, opts.id,
                          std::string("signal ") + std::to_string(sig) + " (SIG" + sigabbrev_np(sig) +
                              "): stopping");
  server.stop();
  return 0;
}
