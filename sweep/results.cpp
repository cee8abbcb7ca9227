// Why: see results.h: the table is read from the run folders alone.
#include "sweep/results.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>

#include "engine/core/check.h"
#include "engine/run/checkpoint.h"
#include "sweep/fit.h"

namespace fs = std::filesystem;

namespace mt {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double number_or_nan(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return kNaN;
  return j[key].get<double>();
}

std::string csv_number(double v) {
  if (!std::isfinite(v)) return "";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string csv_text(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

}  // namespace

SweepResults collect_sweep(const std::string& dir) {
  SweepState state = read_sweep_state(dir);
  SweepResults res;
  res.name = state.name;
  res.reference = state.reference;
  for (const SweepRunInfo& info : state.runs) {
    ResultRow r;
    r.name = info.name;
    r.reuse = info.reuse;
    const std::string run_dir = (fs::path(dir) / info.name).string();
    RunStatus status = run_status(run_dir);
    r.status = to_string(status);
    json summary = status == RunStatus::Finished
                       ? read_json_file((fs::path(run_dir) / "summary.json").string())
                       : json::object();
    // The summary's (actual) values where present, else the plan's.
    auto value = [&](const char* key) {
      double v = number_or_nan(summary, key);
      return std::isfinite(v) ? v : number_or_nan(info.plan, key);
    };
    r.n_params = value("n_params");
    r.n_active = value("n_active");
    r.activation_rate = value("activation_rate");
    r.flops_per_token = value("flops_per_token");
    r.compute = value("compute");
    r.tokens = value("tokens");
    r.unique_tokens = value("unique_tokens");
    r.epochs = value("epochs");
    r.dense = r.activation_rate >= 1.0 - 1e-9;
    r.val_loss = number_or_nan(summary, "val_loss");
    r.val_bpc = number_or_nan(summary, "val_bpc");
    // A run stopped on the way: its time so far, from the latest checkpoint (wall time of all segments).
    const std::string ckpt = status == RunStatus::Finished ? "" : latest_checkpoint(run_dir);
    const json progress = ckpt.empty() ? summary : read_json_file((fs::path(ckpt) / "state.json").string());
    r.wall_seconds = number_or_nan(progress, "wall_seconds");
    r.restarts = number_or_nan(progress, "resumes");
    r.m_rel = r.delta_bpc = r.el = kNaN;
    res.rows.push_back(std::move(r));
  }
  for (const ResultRow& ref : res.rows) {
    if (ref.name != res.reference) continue;
    for (ResultRow& r : res.rows) {
      r.m_rel = r.flops_per_token / ref.flops_per_token;
      r.delta_bpc = r.val_bpc - ref.val_bpc;
    }
  }
  std::vector<double> cs, ls;
  for (const ResultRow& r : res.rows)
    if (r.dense && std::isfinite(r.val_bpc)) {
      cs.push_back(r.compute);
      ls.push_back(r.val_bpc);
    }
  if (cs.empty()) {
    res.el_fit.why = "no finished dense run";
  } else {
    res.el_fit = fit_power_law(cs, ls);
  }
  if (res.el_fit.ok)
    for (ResultRow& r : res.rows)
      if (!r.dense && std::isfinite(r.val_bpc)) r.el = efficiency_leverage(res.el_fit.law, r.val_bpc, r.compute);
  return res;
}

std::string results_csv(const SweepResults& results) {
  std::ostringstream s;
  s << "name,status,reuse,N,Na,ra,M,C,D,D_hat,epochs,M_over_M_ref,val_loss,val_bpc,delta_bpc,wall_seconds,EL,restarts\n";
  for (const ResultRow& r : results.rows) {
    s << csv_text(r.name) << "," << r.status << "," << r.reuse;
    for (double v : {r.n_params, r.n_active, r.activation_rate, r.flops_per_token, r.compute, r.tokens,
                     r.unique_tokens, r.epochs, r.m_rel, r.val_loss, r.val_bpc, r.delta_bpc, r.wall_seconds, r.el,
                     r.restarts})
      s << "," << csv_number(v);
    s << "\n";
  }
  return s.str();
}

}  // namespace mt
