// Why: the non-template parts of the trainer (batch split, resume checks, metrics file
// handling) and its CPU instantiation.
#include "engine/run/trainer.h"

#include <fstream>
#include <sstream>

#include "engine/cpu/cpu_ops.h"
#include "engine/run/trainer_impl.h"

namespace mt {
namespace train_detail {

Plan plan_to_train(const RunConfig& cfg) {
  Plan plan = make_plan(cfg);
  MT_INPUT(!cfg.data.train.empty(), cfg.name, ": data.train is required to train");
  MT_INPUT(!cfg.data.val.empty(), cfg.name, ": data.val is required to train (the run reports val BPC)");
  return plan;
}

std::shared_ptr<const data::TokenDataset> open_split(const RunConfig& cfg, data::Split split) {
  const std::string& path = split == data::Split::Train ? cfg.data.train : cfg.data.val;
  return std::make_shared<const data::TokenDataset>(data::open_dataset(path, split, cfg.model.vocab_size));
}

data::LoaderOptions loader_options(const RunConfig& cfg, const Plan& plan, const ProcessGrid& grid) {
  data::LoaderOptions lo;
  lo.seq_len = cfg.model.seq_len;
  lo.unique_tokens = int64_t(std::llround(plan.unique_tokens));
  lo.seed = cfg.train.seed;
  lo.batch_size = plan.batch_size;
  lo.dp_rank = grid.dp_rank;
  lo.dp_size = grid.dp_size;
  return lo;
}

std::vector<std::string> check_resume_compatible(const json& saved, const json& now, const std::string& ckpt_dir,
                                                 bool override_schedule) {
  std::vector<std::string> changes;
  for (const char* section : {"model", "train", "data"}) {
    json a = saved.contains(section) ? saved[section] : json::object();
    json b = now.contains(section) ? now[section] : json::object();
    // The micro-batch size is a memory knob of the layout, like parallel.*, and the watchdog limit a
    // setting of the machine: they may change.
    if (std::string(section) == "train") {
      a.erase("micro_batch_size");
      b.erase("micro_batch_size");
      a.erase("watchdog_s");
      b.erase("watchdog_s");
      for (const char* key : {"lr", "min_lr", "warmup_iters"}) {
        if (!override_schedule) break;
        if (a.value(key, json()) != b.value(key, json()))
          changes.push_back(str("train.", key, ": ", a.value(key, json()).dump(), " -> ", b.value(key, json()).dump()));
        a.erase(key);
        b.erase(key);
      }
    }
    if (a == b) continue;
    std::string key = section;
    for (auto it = b.begin(); it != b.end(); ++it) {
      if (!a.contains(it.key()) || a[it.key()] != it.value()) {
        key += std::string(".") + it.key() + " (checkpoint " + (a.contains(it.key()) ? a[it.key()].dump() : "absent") +
               ", now " + it.value().dump() + ")";
        break;
      }
    }
    MT_INPUT(false, "--resume: the checkpoint ", ckpt_dir, " was written by a different run: ", key,
             " differs; resume with the same manifest or start a new --out folder",
             std::string(section) == "train" ? " (--override-schedule lets lr, min_lr and warmup_iters change)" : "");
  }
  return changes;
}

void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) {
    std::ofstream(path, std::ios::trunc);
    return;
  }
  std::ostringstream kept;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("step") || j["step"].get<int64_t>() > step) continue;
    kept << line << "\n";
  }
  in.close();
  write_text_atomic(path, kept.str());
}

std::string short_count(double x) {
  char buf[32];
  if (x >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fG", x / 1e9);
  else if (x >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", x / 1e6);
  else if (x >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", x / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", x);
  return buf;
}

std::string short_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = long(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

void MoeWindow::add(const StepStats& s) {
  if (load.size() < s.expert_load.size()) load.resize(s.expert_load.size(), 0.0);
  if (dropped.size() < s.layer_dropped.size()) dropped.resize(s.layer_dropped.size(), 0.0);
  for (size_t i = 0; i < s.expert_load.size(); ++i) load[i] += s.expert_load[i];
  for (size_t l = 0; l < s.layer_dropped.size(); ++l) dropped[l] += s.layer_dropped[l];
  if (entropy.size() < s.router_entropy.size()) entropy.resize(s.router_entropy.size(), 0.0);
  for (size_t l = 0; l < s.router_entropy.size(); ++l) entropy[l] += s.router_entropy[l];
  tokens += s.tokens;
  ++steps;
}

json MoeWindow::to_json(int top_k) const {
  const auto round_to = [](double x, double scale) { return std::round(x * scale) / scale; };
  const double choices = tokens * top_k;
  json share = json::array(), max_load = json::array(), drop = json::array(), dead = json::array(),
       ent = json::array();
  for (size_t l = 0; l * size_t(n_experts) < load.size(); ++l) {
    const double* c = load.data() + l * size_t(n_experts);
    json row = json::array();
    double mx = 0, sum = 0;
    int zero = 0;
    for (int e = 0; e < n_experts; ++e) {
      row.push_back(round_to(c[e] / choices, 1e5));
      mx = std::max(mx, c[e]);
      sum += c[e];
      zero += c[e] == 0 ? 1 : 0;
    }
    share.push_back(std::move(row));
    max_load.push_back(sum > 0 ? round_to(mx / (sum / n_experts), 1e4) : 0.0);
    drop.push_back(round_to((l < dropped.size() ? dropped[l] : 0.0) / choices, 1e5));
    dead.push_back(zero);
    ent.push_back(round_to((l < entropy.size() ? entropy[l] : 0.0) / double(steps), 1e4));
  }
  return {{"moe_tokens", tokens}, {"moe_steps", steps},     {"moe_load", share},
          {"moe_max_load", max_load}, {"moe_dropped", drop}, {"moe_dead", dead}, {"moe_entropy", ent}};
}

}  // namespace train_detail

template TrainResult train<float>(const RunConfig&, const TrainOptions&, Ops<float>&, const ProcessGrid&);
template json evaluate_checkpoint<float>(const RunConfig&, const std::string&, Ops<float>&, const ProcessGrid&);

}  // namespace mt
