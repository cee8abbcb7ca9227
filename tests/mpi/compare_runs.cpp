// Why: the layout contract of DESIGN.md "Parallelism" (any tp / ep / dp layout on the same global
// batch matches the single-process run) needs one judge that the layout tests and
// scripts/parallel_check.sh share. It compares two run folders: the per-step training loss of their
// metrics.jsonl (max relative difference over the common steps) and the parameters of their newest
// checkpoints, assembled to full tensors with export_checkpoint (max over tensors of
// max|a - b| / max|a|), prints one line and exits 1 when a difference is over its threshold. The
// logged gradient norm is compared too: Adam is nearly blind to the scale of a gradient, so a wrong
// factor in a reduction (over tp, ep or edp) would hardly move the parameters, but it moves the norm.
//
// Usage: compare_runs [--loss-tol X] [--param-tol X] [--grad-norm-tol X] [--min-steps N] REF OTHER
// Output: "compare_runs: OTHER vs REF: steps=5 loss_diff=... (step S) grad_norm_diff=...
//          param_diff=... (TENSOR, CHECKPOINT) ok"
// Exit: 0 within the thresholds, 1 over them (or a structural mismatch), 2 bad arguments or input.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "engine/run/checkpoint.h"
#include "engine/run/safetensors.h"

namespace fs = std::filesystem;

namespace {

struct Options {
  double loss_tol = 1e-5;
  double param_tol = 1e-4;
  double grad_norm_tol = 1e-5;
  int min_steps = 5;
  std::string ref, other;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "compare_runs: %s\nusage: compare_runs [--loss-tol X] [--param-tol X] [--grad-norm-tol X] "
               "[--min-steps N] REFERENCE_RUN OTHER_RUN\n",
               why.c_str());
  std::exit(2);
}

double parse_number(const std::string& flag, const char* s) {
  char* end = nullptr;
  const double x = std::strtod(s, &end);
  if (end == s || *end != '\0' || !(x >= 0)) usage(flag + " needs a non-negative number, got '" + s + "'");
  return x;
}

Options parse_args(int argc, char** argv) {
  Options o;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--loss-tol" || a == "--param-tol" || a == "--grad-norm-tol" || a == "--min-steps") {
      if (i + 1 >= argc) usage(a + " needs a value");
      const double x = parse_number(a, argv[++i]);
      if (a == "--loss-tol") o.loss_tol = x;
      if (a == "--param-tol") o.param_tol = x;
      if (a == "--grad-norm-tol") o.grad_norm_tol = x;
      if (a == "--min-steps") o.min_steps = int(x);
    } else if (a.rfind("--", 0) == 0) {
      usage("unknown option " + a);
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() != 2) usage("two run folders are needed");
  o.ref = pos[0];
  o.other = pos[1];
  return o;
}

// step -> (training loss, gradient norm) of the lines with "loss" (eval lines carry "val_loss").
struct StepLog {
  double loss = 0, grad_norm = 0;
};
std::map<int64_t, StepLog> read_metrics(const std::string& run) {
  const std::string path = (fs::path(run) / "metrics.jsonl").string();
  std::ifstream in(path);
  MT_INPUT(in.good(), path, ": cannot open (not a run folder?)");
  std::map<int64_t, StepLog> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error&) {
      throw mt::InputError(mt::str(path, ":", n, ": not JSON"));
    }
    if (!j.contains("loss") || !j.contains("step") || !j["loss"].is_number()) continue;
    MT_INPUT(j.contains("grad_norm") && j["grad_norm"].is_number(), path, ":", n, ": no grad_norm");
    out[j["step"].get<int64_t>()] = {j["loss"].get<double>(), j["grad_norm"].get<double>()};
  }
  return out;
}

struct TempDir {
  std::string path;
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/compare_runs.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    MT_CHECK(::mkdtemp(buf.data()) != nullptr, "cannot create a temporary folder from ", tmpl);
    path = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The newest checkpoint of a run folder (or the folder itself when it is a checkpoint).
std::string newest_checkpoint(const std::string& run) {
  if (fs::exists(fs::path(run) / "state.json")) return run;
  const std::string c = mt::latest_checkpoint(run);
  MT_INPUT(!c.empty(), run, ": no complete checkpoint");
  return c;
}

struct ParamDiff {
  double max_rel = 0;
  std::string worst;
  bool structural_ok = true;
  std::string problem;
};

ParamDiff compare_params(const std::string& ref_ckpt, const std::string& other_ckpt) {
  TempDir tmp;
  const std::string a_path = tmp.path + "/reference.safetensors", b_path = tmp.path + "/other.safetensors";
  mt::export_checkpoint(ref_ckpt, a_path);
  mt::export_checkpoint(other_ckpt, b_path);
  const mt::safetensors::File a(a_path), b(b_path);
  ParamDiff d;
  for (const auto& [name, ea] : a.entries()) {
    if (!b.has(name)) {
      d.structural_ok = false;
      d.problem = "tensor " + name + " is missing from the other run";
      return d;
    }
    const auto& eb = b.entry(name);
    if (ea.shape != eb.shape || ea.dtype != mt::DType::F32 || eb.dtype != mt::DType::F32) {
      d.structural_ok = false;
      d.problem = "tensor " + name + " differs in shape or dtype";
      return d;
    }
    const float* pa = static_cast<const float*>(a.data(name));
    const float* pb = static_cast<const float*>(b.data(name));
    double amax = 0, dmax = 0;
    bool finite = true;
    for (size_t i = 0, n = ea.numel(); i < n; ++i) {
      amax = std::max(amax, std::fabs(double(pa[i])));
      const double diff = std::fabs(double(pa[i]) - double(pb[i]));
      if (!std::isfinite(diff)) finite = false;
      dmax = std::max(dmax, diff);
    }
    const double rel = finite ? dmax / std::max(amax, 1e-30) : INFINITY;
    if (d.worst.empty() || rel > d.max_rel) {
      d.max_rel = rel;
      d.worst = name;
    }
  }
  for (const auto& [name, eb] : b.entries())
    if (!a.has(name)) {
      d.structural_ok = false;
      d.problem = "tensor " + name + " is missing from the reference run";
      return d;
    }
  return d;
}

// |a - b| / |a|, infinite when either is not finite.
double rel_diff(double a, double b) {
  const double diff = std::fabs(a - b);
  return std::isfinite(diff) ? diff / std::max(std::fabs(a), 1e-30) : INFINITY;
}

int run(const Options& o) {
  const auto la = read_metrics(o.ref), lb = read_metrics(o.other);
  double loss_diff = 0, norm_diff = 0;
  int64_t loss_step = -1;
  int common = 0;
  for (const auto& [step, a] : la) {
    auto it = lb.find(step);
    if (it == lb.end()) continue;
    ++common;
    const double rel = rel_diff(a.loss, it->second.loss);
    if (loss_step < 0 || rel > loss_diff) {
      loss_diff = rel;
      loss_step = step;
    }
    norm_diff = std::max(norm_diff, rel_diff(a.grad_norm, it->second.grad_norm));
  }
  const std::string ref_ckpt = newest_checkpoint(o.ref), other_ckpt = newest_checkpoint(o.other);
  const ParamDiff pd = compare_params(ref_ckpt, other_ckpt);

  std::vector<std::string> failures;
  if (common < o.min_steps) failures.push_back(mt::str(common, " common logged steps, fewer than ", o.min_steps));
  if (!(loss_diff <= o.loss_tol)) failures.push_back(mt::str("loss_diff over ", o.loss_tol));
  if (!(norm_diff <= o.grad_norm_tol)) failures.push_back(mt::str("grad_norm_diff over ", o.grad_norm_tol));
  if (!pd.structural_ok) failures.push_back(pd.problem);
  if (!(pd.max_rel <= o.param_tol)) failures.push_back(mt::str("param_diff over ", o.param_tol));
  const std::string ckpt_a = fs::path(ref_ckpt).filename().string(), ckpt_b = fs::path(other_ckpt).filename().string();
  if (ckpt_a != ckpt_b) failures.push_back("the newest checkpoints are " + ckpt_a + " and " + ckpt_b);

  std::string verdict = "ok";
  if (!failures.empty()) {
    verdict = "FAIL:";
    for (size_t i = 0; i < failures.size(); ++i) verdict += (i ? "; " : " ") + failures[i];
  }
  std::printf(
      "compare_runs: %s vs %s: steps=%d loss_diff=%.3e (step %lld) grad_norm_diff=%.3e param_diff=%.3e (%s, %s) %s\n",
      o.other.c_str(), o.ref.c_str(), common, loss_diff, (long long)loss_step, norm_diff, pd.max_rel,
      pd.worst.empty() ? "-" : pd.worst.c_str(), ckpt_b.c_str(), verdict.c_str());
  return failures.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  try {
    return run(o);
  } catch (const mt::InputError& e) {
    std::fprintf(stderr, "compare_runs: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_runs: %s\n", e.what());
    return 1;
  }
}
