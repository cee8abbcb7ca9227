// Why: the tables people read (plan, sweep results, bench) share one formatter: numbers in the
// paper's style (2.15e9, 19.12%) and columns aligned, as plain text or as Markdown.
#pragma once

#include <string>
#include <vector>

namespace mt::app {

std::string fmt_sci(double x, int digits = 3);  // 6.52e9, 2.86e21, 0.4665 -> 4.67e-1
std::string fmt_fixed(double x, int decimals);
std::string fmt_pct(double fraction, int decimals = 2);  // 0.1912 -> "19.12%"
std::string fmt_count(double x);                          // 1234567 -> "1,234,567"
std::string fmt_duration(double seconds);                 // 3725 -> "1h02m05s"

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<bool> left;  // per column: left-aligned (default: first column left, rest right)

  std::string text() const;      // aligned plain text with a rule under the header
  std::string markdown() const;  // a GitHub Markdown table
};

}  // namespace mt::app
