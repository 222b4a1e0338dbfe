// CONFIG GET's table (from a CLI11 app, as main builds it), Redis's glob, CONFIG SET's rules,
// and the config-file reader's refusals.
#include "../../src/server/config_command.h"

#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <sstream>

#include "ticketd/base/log.h"
#include "ticketd/server/config_params.h"

namespace ticketd::server {
namespace {

TEST(ConfigGlob, RedisRules) {
  EXPECT_TRUE(glob_match("*", "maxclients", true));
  EXPECT_TRUE(glob_match("max*", "maxclients", true));
  EXPECT_TRUE(glob_match("MAX*", "maxclients", true));
  EXPECT_FALSE(glob_match("MAX*", "maxclients", false));
  EXPECT_TRUE(glob_match("*clients", "maxclients", true));
  EXPECT_TRUE(glob_match("m?xclients", "maxclients", true));
  EXPECT_FALSE(glob_match("m?clients", "maxclients", true));
  EXPECT_TRUE(glob_match("*a*e*", "max-sequences", true));
  EXPECT_TRUE(glob_match("[ps]ort", "port", true));
  EXPECT_FALSE(glob_match("[^p]ort", "port", true));
  EXPECT_TRUE(glob_match("[^s]ort", "port", true));
  EXPECT_TRUE(glob_match("[a-q]ort", "port", true));
  EXPECT_TRUE(glob_match("[A-Q]ort", "port", true));
  EXPECT_FALSE(glob_match("[q-z]ort", "port", true));
  EXPECT_TRUE(glob_match("\\*", "*", true));
  EXPECT_FALSE(glob_match("\\*", "x", true));
  EXPECT_TRUE(glob_match("a\\?c", "a?c", true));
  EXPECT_FALSE(glob_match("a\\?c", "abc", true));
  EXPECT_TRUE(glob_match("port", "port", true));
  EXPECT_FALSE(glob_match("port", "ports", true));
  EXPECT_FALSE(glob_match("ports", "port", true));
  EXPECT_TRUE(glob_match("***", "", true));
  EXPECT_FALSE(glob_match("?", "", true));
  EXPECT_TRUE(glob_match("*-*-*", "join-password-file", true));
  EXPECT_FALSE(glob_match("*-*-*-*", "join-password-file", true));
}

struct Flags {
  CLI::App app{"test"};
  uint64_t id = 1;
  std::string dir = "data", requirepass, requirepass_file, durability = "high";
  unsigned threads = 0;
  bool no_bootstrap = false;
  bool saw_secret = false;

  Flags() {
    app.option_defaults()->always_capture_default();
    app.add_option("--id", id);
    app.add_option("--dir", dir);
    app.add_option("--threads", threads)->check(CLI::Range(1u, 256u));
    app.add_option("--durability", durability)->check(CLI::IsMember({"high", "medium", "low"}));
    app.add_flag("--no-bootstrap", no_bootstrap);
    app.add_option("--requirepass", requirepass);
    app.add_option("--requirepass-file", requirepass_file);
    app.set_version_flag("--version", "1");
    app.set_config("--config");
    app.config_formatter(make_config_reader(app, &saw_secret));
    app.allow_config_extras(CLI::config_extras_mode::error);
  }
  // Parses argv after reading `file` (CLI11's own parse_from_stream path for the file).
  void parse(std::vector<std::string> args, const std::string& file = "") {
    std::reverse(args.begin(), args.end());
    app.parse(args);
    if (!file.empty()) {
      std::istringstream in(file);
      app.parse_from_stream(in);
    }
  }
  std::string value(const std::vector<ConfigParam>& ps, const std::string& name) {
    for (const ConfigParam& p : ps) {
      if (p.name == name) return p.value;
    }
    return "<absent>";
  }
};

TEST(ConfigParams, EveryOptionWithItsValueOrDefault) {
  Flags f;
  f.parse({"--id", "7", "--no-bootstrap"});
  std::vector<ConfigParam> ps = describe_options(f.app);
  EXPECT_EQ(f.value(ps, "id"), "7");
  EXPECT_EQ(f.value(ps, "dir"), "data");
  EXPECT_EQ(f.value(ps, "threads"), "0");
  EXPECT_EQ(f.value(ps, "durability"), "high");
  EXPECT_EQ(f.value(ps, "no-bootstrap"), "yes");
  EXPECT_EQ(f.value(ps, "requirepass-file"), "");
  EXPECT_EQ(f.value(ps, "config"), "");
  EXPECT_EQ(f.value(ps, "help"), "<absent>");
  EXPECT_EQ(f.value(ps, "version"), "<absent>");
}

TEST(ConfigParams, SecretsAreNeverInTheTable) {
  Flags f;
  f.parse({"--requirepass", "hunter2-hunter2"});
  std::vector<ConfigParam> ps = describe_options(f.app);
  EXPECT_EQ(f.value(ps, "requirepass"), "<absent>");
  for (const ConfigParam& p : ps) EXPECT_EQ(p.value.find("hunter2"), std::string::npos) << p.name;
  EXPECT_TRUE(is_secret_param("requirepass"));
  EXPECT_TRUE(is_secret_param("tls-key-file-pass"));
  EXPECT_TRUE(is_secret_param("join-password"));
  EXPECT_TRUE(is_secret_param("cluster-secret"));
  EXPECT_FALSE(is_secret_param("requirepass-file"));
  EXPECT_FALSE(is_secret_param("cluster-secret-file"));
  EXPECT_FALSE(is_secret_param("join-password-file"));
  EXPECT_FALSE(is_secret_param("aclfile"));
  EXPECT_FALSE(is_secret_param("dir"));
}

TEST(ConfigFile, ValuesFromTheFileTheCommandLineWins) {
  Flags f;
  f.parse({"--id", "3"}, "id = 9\ndir = \"/var/lib/x\"\nthreads = 4\nno-bootstrap = true\n");
  EXPECT_EQ(f.id, 3u);
  EXPECT_EQ(f.dir, "/var/lib/x");
  EXPECT_EQ(f.threads, 4u);
  EXPECT_TRUE(f.no_bootstrap);
  EXPECT_FALSE(f.saw_secret);
  std::vector<ConfigParam> ps = describe_options(f.app);
  EXPECT_EQ(f.value(ps, "dir"), "/var/lib/x");
  EXPECT_EQ(f.value(ps, "no-bootstrap"), "yes");
}

TEST(ConfigFile, UnknownKeysAndSectionsAreRefused) {
  {
    Flags f;
    try {
      f.parse({}, "idd = 3\n");
      FAIL() << "accepted an unknown key";
    } catch (const CLI::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("unknown key 'idd'"), std::string::npos) << e.what();
    }
  }
  {
    Flags f;
    EXPECT_THROW(f.parse({}, "[server]\nid = 3\n"), CLI::ConfigError);
  }
  {
    // A line that is no flag name is refused without being repeated (it may be a secret).
    Flags f;
    try {
      f.parse({}, "S3cr3t+Passw0rd/x\n");
      FAIL() << "accepted a stray line";
    } catch (const CLI::ConfigError& e) {
      EXPECT_EQ(std::string(e.what()).find("S3cr3t"), std::string::npos) << e.what();
    }
  }
  {
    Flags f;
    EXPECT_THROW(f.parse({}, "threads = 999\n"), CLI::ValidationError);
  }
  {
    Flags f;
    EXPECT_THROW(f.parse({}, "durability = \"sometimes\"\n"), CLI::ValidationError);
  }
  {
    Flags f;
    f.parse({}, "requirepass = \"pw-from-file\"\n");
    EXPECT_TRUE(f.saw_secret);
    EXPECT_EQ(f.requirepass, "pw-from-file");
  }
}

TEST(ConfigTable, GetMatchesEachNameOnceSorted) {
  ConfigTable t({{"port", "11001"}, {"maxclients", "20000"}, {"dir", "data"}, {"max-sequences", "10"}});
  std::string_view all[] = {"*"};
  std::vector<ConfigParam> got = t.get(all);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].name, "dir");
  EXPECT_EQ(got[3].name, "port");
  std::string_view several[] = {"MAX*", "maxclients", "port"};
  got = t.get(several);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], (ConfigParam{"max-sequences", "10"}));
  EXPECT_EQ(got[1], (ConfigParam{"maxclients", "20000"}));
  EXPECT_EQ(got[2], (ConfigParam{"port", "11001"}));
  std::string_view none[] = {"nosuch"};
  EXPECT_TRUE(t.get(none).empty());
}

TEST(ConfigTable, OnlyLoglevelChangesAtRunTime) {
  ConfigTable t({{"loglevel", "notice"}, {"port", "11001"}});
  logging::set_level(logging::Level::kNotice);
  std::string err;
  std::string_view set_port[] = {"port", "1"};
  EXPECT_FALSE(t.set_at_run_time(set_port, &err));
  EXPECT_EQ(err, "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config");
  std::string_view set_unknown[] = {"nosuch", "1"};
  EXPECT_FALSE(t.set_at_run_time(set_unknown, &err));
  EXPECT_EQ(err, "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'");
  std::string_view set_secret[] = {"requirepass", "x"};
  EXPECT_FALSE(t.set_at_run_time(set_secret, &err));
  EXPECT_NE(err.find("immutable"), std::string::npos);
  std::string_view bad[] = {"loglevel", "loud"};
  EXPECT_FALSE(t.set_at_run_time(bad, &err));
  EXPECT_NE(err.find("must be one of the following: debug, verbose, notice, warning"), std::string::npos);
  // All or nothing: a bad second pair leaves the level as it was.
  std::string_view mixed[] = {"loglevel", "debug", "port", "1"};
  EXPECT_FALSE(t.set_at_run_time(mixed, &err));
  EXPECT_EQ(logging::level(), logging::Level::kNotice);
  std::string_view ok[] = {"LogLevel", "warning"};
  EXPECT_TRUE(t.set_at_run_time(ok, &err));
  EXPECT_EQ(logging::level(), logging::Level::kWarning);
  std::string_view get[] = {"loglevel"};
  EXPECT_EQ(t.get(get).at(0).value, "warning");
  logging::set_level(logging::Level::kNotice);
}

}  // namespace
}  // namespace ticketd::server
