// server: the settings a node runs with, as CONFIG GET reports them and as a --config file
// gives them. Both come from the CLI11 app itself, so a flag added there is in the file
// format and in CONFIG GET without further work.
// Promises: a secret (a password, not the path of a file holding one) is never in the
// table, never in an error text. Never: a config parser of our own (CLI11's reads the file).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ticketd/server/options.h"

namespace CLI {
class App;
class Config;
}  // namespace CLI

namespace ticketd::server {

// A flag whose value is itself a secret: its name holds "pass" or "secret" and it is not the
// path of a file (`requirepass` is; `requirepass-file`, `cluster-secret-file` are not).
bool is_secret_param(std::string_view name);

// Every long option of a parsed `app`, named without its dashes: the value given (on the
// command line or in the config file), else its default ("" when it has none); flags are
// yes/no, as Redis's booleans. Secret options, --help and --version are left out.
std::vector<ConfigParam> describe_options(const CLI::App& app);

// CLI11's own TOML/INI reader, plus a check that every key names an option of `app`
// (unknown keys and [sections] are refused with CLI::ConfigError; a key is repeated in the
// message only if it looks like a flag name, so a secret pasted into the file by mistake is
// never echoed). Install with app.config_formatter(make_config_reader(app, &saw_secret)):
// *saw_secret becomes true when the file sets a secret option (main then checks the file's mode).
std::shared_ptr<CLI::Config> make_config_reader(const CLI::App& app, bool* saw_secret);

}  // namespace ticketd::server
