// Why: `moetrain plan FILE`: the paper's resource accounting for a run or every run of a sweep,
// from the architecture and the budget alone (no data, no weights). With --paper, each run that
// carries the published values of its table row is printed beside them.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "app/command.h"
#include "app/format.h"
#include "engine/core/check.h"
#include "engine/run/plan.h"

namespace mt::app {
namespace {

struct PlanArgs {
  std::string file;
  bool as_json = false;
  bool paper = false;
  std::vector<std::string> overrides;
};

std::string fmt_ratio(double x, bool present) { return present ? fmt_fixed(x, 2) : "-"; }

Table plan_table(const std::vector<Plan>& plans, const std::vector<RunConfig>& cfgs) {
  Table t;
  t.header = {"run", "N", "Na", "ra", "M", "6Na/M", "D", "C", "D^", "epochs", "iters", "B", "lr", "D/N",
              "alpha", "mu", "beta", "zeta", "gamma"};
  for (size_t i = 0; i < plans.size(); ++i) {
    const Plan& p = plans[i];
    bool moe = cfgs[i].model.moe.enabled;
    bool dense_layers = cfgs[i].model.n_dense_layers() > 0;
    t.rows.push_back({p.name, fmt_sci(p.n_params), fmt_sci(p.n_active), fmt_pct(p.activation_rate),
                      fmt_sci(p.flops_per_token), fmt_pct(6.0 * double(p.n_active) / p.flops_per_token, 1),
                      fmt_sci(p.tokens), fmt_sci(p.compute), fmt_sci(p.unique_tokens),
                      fmt_fixed(p.epochs, 2), fmt_count(double(p.iters)),
                      std::to_string(p.batch_size) + (p.batch_auto ? "*" : ""),
                      fmt_sci(p.lr) + (p.lr_auto ? "*" : ""), fmt_fixed(p.d_over_n, 1),
                      fmt_ratio(p.alpha, dense_layers), fmt_ratio(p.mu, moe), fmt_ratio(p.beta, moe),
                      fmt_fixed(p.zeta, 1), fmt_fixed(p.gamma, 3)});
  }
  return t;
}

// Ours against the paper's row: one line each, and the largest relative difference.
Table paper_table(const std::vector<Plan>& plans, const std::vector<json>& papers, double* worst) {
  struct Col {
    const char* key;
    const char* head;
    double (*ours)(const Plan&);
    bool pct;
    std::string show(double v) const {
      if (pct) return fmt_pct(v);
      if (std::string(key) == "epochs") return fmt_fixed(v, 2);
      if (std::string(key) == "B") return fmt_count(v);
      return fmt_sci(v);
    }
  };
  static const Col cols[] = {
      {"N", "N", [](const Plan& p) { return double(p.n_params); }, false},
      {"Na", "Na", [](const Plan& p) { return double(p.n_active); }, false},
      {"ra", "ra", [](const Plan& p) { return p.activation_rate; }, true},
      {"M", "M", [](const Plan& p) { return p.flops_per_token; }, false},
      {"D", "D", [](const Plan& p) { return p.tokens; }, false},
      {"C", "C", [](const Plan& p) { return p.compute; }, false},
      {"D_hat", "D^", [](const Plan& p) { return p.unique_tokens; }, false},
      {"epochs", "epochs", [](const Plan& p) { return p.epochs; }, false},
      {"lr", "lr", [](const Plan& p) { return p.lr; }, false},
      {"B", "B", [](const Plan& p) { return double(p.batch_size); }, false},
  };
  Table t;
  t.header = {"run", ""};
  for (auto& c : cols) t.header.push_back(c.head);
  t.header.push_back("max |diff| (N..epochs)");
  t.left = {true, true};
  *worst = 0;
  for (size_t i = 0; i < plans.size(); ++i) {
    if (papers[i].is_null()) continue;
    std::vector<std::string> ours = {plans[i].name, "ours"}, theirs = {"", "paper"};
    double row_worst = 0;
    for (auto& c : cols) {
      double o = c.ours(plans[i]);
      ours.push_back(c.show(o));
      if (!papers[i].contains(c.key)) {
        theirs.push_back("-");
        continue;
      }
      double v = papers[i][c.key].get<double>();
      if (c.pct) v /= 100.0;  // the paper prints ra in percent
      theirs.push_back(c.show(v));
      bool checked = std::string(c.key) != "lr" && std::string(c.key) != "B";
      if (checked && v != 0) row_worst = std::max(row_worst, std::fabs(o - v) / std::fabs(v));
    }
    ours.push_back(fmt_pct(row_worst));
    theirs.push_back("");
    *worst = std::max(*worst, row_worst);
    t.rows.push_back(ours);
    t.rows.push_back(theirs);
  }
  return t;
}

void run_plan(const PlanArgs& a) {
  Manifest m = load_manifest(a.file, a.overrides);
  std::vector<Plan> plans;
  std::vector<RunConfig> cfgs;
  std::vector<json> papers;
  for (auto& run : m.sweep.runs) {
    std::string where = m.is_sweep ? a.file + ": run \"" + run.name + "\"" : a.file;
    RunConfig cfg = parse_run(run.manifest, where, m.sweep.base_dir);
    if (cfg.name.empty()) cfg.name = run.name;
    plans.push_back(make_plan(cfg));
    cfgs.push_back(cfg);
    papers.push_back(run.paper);
  }
  if (a.as_json) {
    if (!m.is_sweep) {
      std::cout << plans[0].to_json().dump(2) << "\n";
    } else {
      json arr = json::array();
      for (size_t i = 0; i < plans.size(); ++i) {
        json j = plans[i].to_json();
        if (!papers[i].is_null()) j["paper"] = papers[i];
        arr.push_back(j);
      }
      std::cout << arr.dump(2) << "\n";
    }
    return;
  }
  std::cout << (m.is_sweep ? "sweep " : "run ") << m.sweep.name << " (" << plans.size() << " run"
            << (plans.size() > 1 ? "s" : "") << ")\n\n";
  if (a.paper) {
    double worst = 0;
    Table t = paper_table(plans, papers, &worst);
    MT_INPUT(!t.rows.empty(), a.file, ": --paper: no run carries published values (a \"paper\" object)");
    std::cout << t.text() << "\nlargest relative difference over N, Na, ra, M, D, C, D^, epochs: "
              << fmt_pct(worst) << "\n(lr and B are the paper's own choices; see README \"Step Law\")\n";
    return;
  }
  std::cout << plan_table(plans, cfgs).text();
  std::cout << "\nN, Na: non-embedding parameters (attention, FFN, experts, shared, router, norms); "
               "M = 6 Na + 12 L Dm S FLOPs/token (6Na/M: the share of its first term);\n"
               "C = M D; D^ unique tokens; * = \"auto\" (Step Law: "
               "lr = 1.79 N^-0.713 D^0.307, B = 0.58 D^0.571 tokens)\n";
}

RegisterCommand reg("plan", 10, [](CLI::App& app) {
  auto args = std::make_shared<PlanArgs>();
  auto* sub = app.add_subcommand("plan", "Resource accounting of a run or sweep: N, Na, ra, M, C, D, D^, "
                                         "epochs, iterations, and auto lr / batch size");
  sub->add_option("file", args->file, "run or sweep manifest (JSON)")->required()->check(CLI::ExistingFile);
  sub->add_flag("--json", args->as_json, "print JSON: an object for a run, an array for a sweep");
  sub->add_flag("--paper", args->paper, "print each run beside the published values of its table row");
  sub->add_option("--set", args->overrides, "override a manifest key, e.g. --set train.tokens=1e9")
      ->take_all();
  sub->callback([args] { run_plan(*args); });
});

}  // namespace
}  // namespace mt::app
