// The settings table from the CLI11 app, and CLI11's config reader with a key check.
#include "ticketd/server/config_params.h"

#include <CLI/CLI.hpp>

namespace ticketd::server {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool left_out(std::string_view name) {
  return name == "help" || name == "version" || is_secret_param(name);
}

// Could `key` be repeated in an error without repeating a secret? Flag names are short,
// lower case words with dashes; a password rarely is (and a 64-digit hex key is too long).
bool looks_like_a_flag_name(std::string_view key) {
  if (key.empty() || key.size() > 40 || key[0] < 'a' || key[0] > 'z') return false;
  for (char ch : key) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
    if (!ok) return false;
  }
  return true;
}

// CLI11's TOML reader (it also reads INI's `key=value` lines), refusing what names no flag.
class CheckedConfig : public CLI::ConfigTOML {
 public:
  CheckedConfig(const CLI::App& app, bool* saw_secret) : app_(app), saw_secret_(saw_secret) {}

  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::vector<CLI::ConfigItem> items = CLI::ConfigTOML::from_config(input);
    for (const CLI::ConfigItem& item : items) {
      if (item.name == "++" || item.name == "--") continue;  // CLI11's section markers
      if (!item.parents.empty()) {
        throw CLI::ConfigError("[" + safe(item.parents.front()) +
                               "]: sections are not used; write every flag at the top level");
      }
      const CLI::Option* op = find(item.name);
      if (op == nullptr) {
        throw CLI::ConfigError(looks_like_a_flag_name(item.name)
                                   ? "unknown key '" + item.name + "' (no such flag)"
                                   : std::string("a key that names no flag (not repeated here: "
                                                 "it does not look like a flag name)"));
      }
      if (!op->get_configurable()) {
        throw CLI::ConfigError("'" + item.name + "' cannot be set in a config file");
      }
      if (is_secret_param(item.name) && saw_secret_ != nullptr) *saw_secret_ = true;
    }
    return items;
  }

 private:
  static std::string safe(const std::string& key) {
    return looks_like_a_flag_name(key) ? key : std::string("(a section)");
  }
  // The lookup CLI11's _parse_single_config does.
  const CLI::Option* find(const std::string& name) const {
    const CLI::Option* op = app_.get_option_no_throw("--" + name);
    if (op == nullptr && name.size() == 1) op = app_.get_option_no_throw("-" + name);
    if (op == nullptr) op = app_.get_option_no_throw(name);
    return op;
  }

  const CLI::App& app_;
  bool* saw_secret_;
};

}  // namespace

bool is_secret_param(std::string_view name) {
  bool secretish = name.find("pass") != std::string_view::npos ||
                   name.find("secret") != std::string_view::npos;
  return secretish && !ends_with(name, "-file") && !ends_with(name, "file");
}

std::vector<ConfigParam> describe_options(const CLI::App& app) {
  std::vector<ConfigParam> out;
  for (const CLI::Option* opt : app.get_options()) {
    const std::vector<std::string>& names = opt->get_lnames();
    if (names.empty()) continue;
    const std::string& name = names.front();
    if (left_out(name)) continue;
    ConfigParam p{name, ""};
    if (opt->get_expected_min() == 0) {
      // A flag: yes/no, as Redis reports its booleans.
      bool on = false;
      if (opt->count() > 0) {
        try {
          on = opt->as<bool>();
        } catch (const CLI::Error&) {
          on = true;
        }
      }
      p.value = on ? "yes" : "no";
    } else if (opt->count() > 0) {
      for (const std::string& r : opt->results()) {
        if (!p.value.empty()) p.value += ' ';
        p.value += r;
      }
    } else {
      p.value = opt->get_default_str();
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::shared_ptr<CLI::Config> make_config_reader(const CLI::App& app, bool* saw_secret) {
  return std::make_shared<CheckedConfig>(app, saw_secret);
}

}  // namespace ticketd::server
