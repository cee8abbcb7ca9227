// Why: see format.h.
#include "app/format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace mt::app {

std::string fmt_sci(double x, int digits) {
  if (x == 0) return "0";
  if (!std::isfinite(x)) return std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*e", digits - 1, x);
  std::string s(buf);
  auto e = s.find('e');
  std::string mant = s.substr(0, e);
  int exp = std::stoi(s.substr(e + 1));
  return mant + "e" + std::to_string(exp);
}

std::string fmt_fixed(double x, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, x);
  return buf;
}

std::string fmt_pct(double fraction, int decimals) { return fmt_fixed(100.0 * fraction, decimals) + "%"; }

std::string fmt_count(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", x);
  std::string s(buf), out;
  int n = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (n && n % 3 == 0 && *it != '-') out.push_back(',');
    out.push_back(*it);
    ++n;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string fmt_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = long(seconds + 0.5);
  char buf[64];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm%02lds", s / 3600, (s / 60) % 60, s % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
  return buf;
}

namespace {
std::vector<size_t> widths(const Table& t) {
  std::vector<size_t> w(t.header.size(), 0);
  for (size_t c = 0; c < t.header.size(); ++c) w[c] = t.header[c].size();
  for (auto& r : t.rows)
    for (size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], r[c].size());
  return w;
}
bool is_left(const Table& t, size_t c) { return c < t.left.size() ? t.left[c] : c == 0; }
std::string pad(const std::string& s, size_t w, bool left) {
  if (s.size() >= w) return s;
  return left ? s + std::string(w - s.size(), ' ') : std::string(w - s.size(), ' ') + s;
}
}  // namespace

std::string Table::text() const {
  auto w = widths(*this);
  std::string out;
  auto line = [&](const std::vector<std::string>& r) {
    for (size_t c = 0; c < w.size(); ++c) {
      out += pad(c < r.size() ? r[c] : "", w[c], is_left(*this, c));
      out += c + 1 < w.size() ? "  " : "\n";
    }
  };
  line(header);
  size_t total = 0;
  for (auto x : w) total += x + 2;
  out += std::string(total > 2 ? total - 2 : 0, '-') + "\n";
  for (auto& r : rows) line(r);
  return out;
}

std::string Table::markdown() const {
  auto w = widths(*this);
  std::string out = "|";
  for (size_t c = 0; c < w.size(); ++c) out += " " + pad(header[c], w[c], is_left(*this, c)) + " |";
  out += "\n|";
  for (size_t c = 0; c < w.size(); ++c)
    out += is_left(*this, c) ? " :" + std::string(w[c] - 1, '-') + " |" : " " + std::string(w[c] - 1, '-') + ": |";
  out += "\n";
  for (auto& r : rows) {
    out += "|";
    for (size_t c = 0; c < w.size(); ++c) out += " " + pad(c < r.size() ? r[c] : "", w[c], is_left(*this, c)) + " |";
    out += "\n";
  }
  return out;
}

}  // namespace mt::app
