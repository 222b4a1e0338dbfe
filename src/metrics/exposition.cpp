#include "ticketd/metrics/exposition.h"

#include <cmath>
#include <cstdio>

namespace ticketd::metrics {

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char ch : v) {
    if (ch == '\\') {
      out += "\\\\";
    } else if (ch == '"') {
      out += "\\\"";
    } else if (ch == '\n') {
      out += "\\n";
    } else {
      out += ch;
    }
  }
  return out;
}

std::string format_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  } else {
    std::snprintf(buf, sizeof(buf), "%.9g", v);
  }
  return buf;
}

void TextExposition::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  // HELP text escapes only backslash and newline.
  for (char ch : help) {
    if (ch == '\\') {
      out_ += "\\\\";
    } else if (ch == '\n') {
      out_ += "\\n";
    } else {
      out_ += ch;
    }
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void TextExposition::labels(std::span<const Label> ls, std::string_view extra_name,
                            std::string_view extra_value) {
  if (ls.empty() && extra_name.empty()) return;
  out_ += '{';
  bool first = true;
  auto one = [&](std::string_view n, std::string_view v) {
    if (!first) out_ += ',';
    first = false;
    out_ += n;
    out_ += "=\"";
    out_ += escape_label_value(v);
    out_ += '"';
  };
  for (const Label& l : ls) one(l.first, l.second);
  if (!extra_name.empty()) one(extra_name, extra_value);
  out_ += '}';
}

void TextExposition::number(double v) { out_ += format_number(v); }

void TextExposition::sample(std::string_view name, std::initializer_list<Label> ls, double value) {
  sample(name, std::span<const Label>(ls.begin(), ls.size()), value);
}

void TextExposition::sample(std::string_view name, std::span<const Label> ls, double value) {
  out_ += name;
  labels(ls);
  out_ += ' ';
  number(value);
  out_ += '\n';
}

void TextExposition::histogram(std::string_view name, std::span<const Label> ls,
                               const HistogramCounts& h, uint64_t sum_raw,
                               std::span<const double> le, double unit) {
  std::string bucket(name);
  bucket += "_bucket";
  size_t i = 0;
  uint64_t cumulative = 0;
  for (double bound : le) {
    // Every histogram bucket whose values are all at or below the bound.
    double raw = bound * unit;
    while (i < h.b.size() && static_cast<double>(LatencyHistogram::bucket_high(i)) <= raw) {
      cumulative += h.b[i];
      ++i;
    }
    out_ += bucket;
    labels(ls, "le", format_number(bound));
    out_ += ' ';
    number(static_cast<double>(cumulative));
    out_ += '\n';
  }
  out_ += bucket;
  labels(ls, "le", "+Inf");
  out_ += ' ';
  number(static_cast<double>(h.total));
  out_ += '\n';
  out_ += name;
  out_ += "_sum";
  labels(ls);
  out_ += ' ';
  number(static_cast<double>(sum_raw) / unit);
  out_ += '\n';
  out_ += name;
  out_ += "_count";
  labels(ls);
  out_ += ' ';
  number(static_cast<double>(h.total));
  out_ += '\n';
}

}  // namespace ticketd::metrics
