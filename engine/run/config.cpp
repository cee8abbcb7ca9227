// Why: manifest parsing and validation. Each key is read by type from an ObjReader that remembers
// which keys it consumed, so that unknown keys (typos) are errors naming their JSON path.
#include "engine/run/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include "engine/core/check.h"

namespace fs = std::filesystem;

namespace mt {

const char* to_string(Reuse reuse) {
  switch (reuse) {
    case Reuse::None: return "none";
    case Reuse::Strict: return "strict";
    case Reuse::Loose: return "loose";
  }
  return "?";
}

namespace {

std::string describe(const json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

// Reads the keys of one JSON object by type; finish() rejects the keys nobody asked for.
class ObjReader {
 public:
  ObjReader(const json& obj, std::string path, const std::string& where)
      : obj_(obj), path_(std::move(path)), where_(where) {
    MT_INPUT(obj.is_object(), where_, ": ", path_.empty() ? "the manifest" : path_,
             " must be a JSON object, got ", describe(obj));
  }

  std::string key_path(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }

  [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
    throw InputError(str(where_, ": ", key_path(key), ": ", msg));
  }

  const json* find(const std::string& key) {
    used_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  bool has(const std::string& key) const { return obj_.contains(key) && !obj_.at(key).is_null(); }

  int64_t get_int(const std::string& key, int64_t def, bool required = false,
                  int64_t min = std::numeric_limits<int64_t>::min()) {
    const json* v = find(key);
    if (!v) {
      if (required) fail(key, "is required");
      return def;
    }
    int64_t out = as_int(key, *v);
    if (out < min) fail(key, str("must be >= ", min, ", got ", out));
    return out;
  }

  int64_t as_int(const std::string& key, const json& v) const {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
    }
    fail(key, str("must be an integer, got ", describe(v)));
  }

  double get_number(const std::string& key, double def, bool required = false) {
    const json* v = find(key);
    if (!v) {
      if (required) fail(key, "is required");
      return def;
    }
    return as_number(key, *v);
  }

  double as_number(const std::string& key, const json& v) const {
    if (!v.is_number()) fail(key, str("must be a number, got ", describe(v)));
    double d = v.get<double>();
    if (!std::isfinite(d)) fail(key, "must be finite");
    return d;
  }

  bool get_bool(const std::string& key, bool def) {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_boolean()) fail(key, str("must be true or false, got ", describe(*v)));
    return v->get<bool>();
  }

  std::string get_string(const std::string& key, const std::string& def) {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_string()) fail(key, str("must be a string, got ", describe(*v)));
    return v->get<std::string>();
  }

  // A string among `options`; returns its index.
  int get_enum(const std::string& key, const std::vector<std::string>& options, int def) {
    const json* v = find(key);
    if (!v) return def;
    std::string all;
    for (auto& o : options) all += (all.empty() ? "" : "|") + o;
    if (!v->is_string()) fail(key, str("must be one of ", all, ", got ", describe(*v)));
    for (size_t i = 0; i < options.size(); ++i)
      if (v->get<std::string>() == options[i]) return int(i);
    fail(key, str("unknown value ", describe(*v), " (expected ", all, ")"));
  }

  // A number, or the string "auto" (returned as `auto_value`).
  double get_number_or_auto(const std::string& key, double def, double auto_value) {
    const json* v = find(key);
    if (!v) return def;
    if (v->is_string()) {
      if (v->get<std::string>() == "auto") return auto_value;
      fail(key, str("must be a number or \"auto\", got ", describe(*v)));
    }
    return as_number(key, *v);
  }

  const json* child(const std::string& key) {
    const json* v = find(key);
    if (v && !v->is_object()) fail(key, str("must be a JSON object, got ", describe(*v)));
    return v;
  }

  void finish() const {
    for (auto it = obj_.begin(); it != obj_.end(); ++it)
      if (!used_.count(it.key())) fail(it.key(), "unknown key");
  }

  const std::string& where() const { return where_; }

 private:
  const json& obj_;
  std::string path_;
  const std::string& where_;
  std::set<std::string> used_;
};

int to_int(ObjReader& r, const std::string& key, int64_t v) {
  if (v > std::numeric_limits<int>::max() || v < std::numeric_limits<int>::min())
    r.fail(key, str("is out of range: ", v));
  return int(v);
}

void parse_moe(ObjReader& r, MoeConfig& m) {
  m.enabled = true;
  m.layout = MoeLayout(r.get_enum("layout", {"full", "1dense", "interleave"}, 1));
  m.n_experts = to_int(r, "n_experts", r.get_int("n_experts", 0, true, 1));
  m.top_k = to_int(r, "top_k", r.get_int("top_k", 0, true, 1));
  m.d_expert = to_int(r, "d_expert", r.get_int("d_expert", 0, true, 1));
  m.d_shared = to_int(r, "d_shared", r.get_int("d_shared", 0, false, 0));
  m.normalize_gates = r.get_bool("normalize_gates", false);
  m.balance_coef = r.get_number("balance_coef", m.balance_coef);
  m.z_loss_coef = r.get_number("z_loss_coef", m.z_loss_coef);
  m.capacity_factor = r.get_number("capacity_factor", m.capacity_factor);
  if (m.top_k > m.n_experts)
    r.fail("top_k", str(m.top_k, " is larger than ", r.key_path("n_experts"), " (", m.n_experts, ")"));
  if (m.balance_coef < 0) r.fail("balance_coef", "must be >= 0");
  if (m.z_loss_coef < 0) r.fail("z_loss_coef", "must be >= 0");
  if (m.capacity_factor < 0) r.fail("capacity_factor", "must be >= 0 (0: dropless)");
  if (m.normalize_gates && m.top_k == 1)
    r.fail("normalize_gates", "with top_k = 1 the renormalised gate is always 1 and the router gets no gradient");
  r.finish();
}

void parse_model(ObjReader& r, ModelConfig& m) {
  m.vocab_size = to_int(r, "vocab_size", r.get_int("vocab_size", m.vocab_size, false, 2));
  m.d_model = to_int(r, "d_model", r.get_int("d_model", 0, true, 1));
  m.n_layers = to_int(r, "n_layers", r.get_int("n_layers", 0, true, 1));
  m.n_heads = to_int(r, "n_heads", r.get_int("n_heads", 0, true, 1));
  if (r.has("head_dim")) {
    int64_t hd = r.get_int("head_dim", 0);
    if (hd <= 0) r.fail("head_dim", str("must be > 0, got ", hd));
    m.head_dim = to_int(r, "head_dim", hd);
  } else {
    if (m.d_model % m.n_heads != 0)
      r.fail("head_dim", str("is not given and d_model (", m.d_model, ") is not a multiple of n_heads (",
                             m.n_heads, ")"));
    m.head_dim = m.d_model / m.n_heads;
  }
  m.d_ffn = to_int(r, "d_ffn", r.get_int("d_ffn", 0, false, 0));
  m.seq_len = to_int(r, "seq_len", r.get_int("seq_len", m.seq_len, false, 1));
  m.norm_eps = r.get_number("norm_eps", m.norm_eps);
  if (!(m.norm_eps > 0)) r.fail("norm_eps", "must be > 0");
  m.tie_embeddings = r.get_bool("tie_embeddings", false);
  if (const json* moe = r.child("moe")) {
    ObjReader mr(*moe, r.key_path("moe"), r.where());
    parse_moe(mr, m.moe);
  }
  if (m.n_dense_layers() > 0 && m.d_ffn <= 0)
    r.fail("d_ffn", str("is required (> 0): the model has ", m.n_dense_layers(), " dense layer(s)"));
  r.finish();
}

void parse_train(ObjReader& r, TrainConfig& t, const std::string& base_dir) {
  int budgets = r.has("tokens") + r.has("compute") + r.has("match_compute");
  if (budgets != 1)
    r.fail("tokens", budgets == 0
                         ? "no budget: give exactly one of train.tokens, train.compute, train.match_compute"
                         : "the budget is given twice: give exactly one of train.tokens, train.compute, "
                           "train.match_compute");
  if (r.has("tokens")) {
    t.budget = Budget::Tokens;
    t.tokens = r.get_number("tokens", 0);
    if (!(t.tokens > 0)) r.fail("tokens", "must be > 0");
  } else if (r.has("compute")) {
    t.budget = Budget::Compute;
    t.compute = r.get_number("compute", 0);
    if (!(t.compute > 0)) r.fail("compute", "must be > 0");
  } else {
    t.budget = Budget::MatchCompute;
    t.match_compute = r.get_string("match_compute", "");
    if (t.match_compute.empty()) r.fail("match_compute", "must name a manifest");
    fs::path p(t.match_compute);
    if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
    t.match_compute = p.lexically_normal().string();
  }
  double b = r.get_number_or_auto("batch_size", 0, 0);
  if (r.has("batch_size") && b != 0) {
    if (b != std::floor(b) || b < 1) r.fail("batch_size", str("must be a positive integer or \"auto\", got ", b));
  }
  t.batch_size = int(b);
  t.micro_batch_size = to_int(r, "micro_batch_size", r.get_int("micro_batch_size", 0, false, 0));
  t.lr = r.get_number_or_auto("lr", 0, 0);
  if (r.has("lr") && t.lr < 0) r.fail("lr", "must be > 0 or \"auto\"");
  if (r.has("lr") && t.lr == 0 && !r.find("lr")->is_string()) r.fail("lr", "must be > 0 or \"auto\"");
  t.min_lr = r.get_number("min_lr", t.min_lr);
  if (t.min_lr < 0) r.fail("min_lr", "must be >= 0");
  double w = r.get_number_or_auto("warmup_iters", -1, -1);
  if (r.has("warmup_iters") && w != -1 && (w < 0 || w != std::floor(w)))
    r.fail("warmup_iters", "must be a non-negative integer or \"auto\"");
  t.warmup_iters = int(w);
  t.weight_decay = r.get_number("weight_decay", t.weight_decay);
  if (t.weight_decay < 0) r.fail("weight_decay", "must be >= 0");
  t.grad_clip = r.get_number("grad_clip", t.grad_clip);
  if (t.grad_clip < 0) r.fail("grad_clip", "must be >= 0 (0: off)");
  t.beta1 = r.get_number("beta1", t.beta1);
  if (!(t.beta1 >= 0 && t.beta1 < 1)) r.fail("beta1", "must be in [0, 1)");
  t.beta2 = r.get_number("beta2", t.beta2);
  if (!(t.beta2 >= 0 && t.beta2 < 1)) r.fail("beta2", "must be in [0, 1)");
  t.eps = r.get_number("eps", t.eps);
  if (!(t.eps > 0)) r.fail("eps", "must be > 0");
  t.seed = uint64_t(r.get_int("seed", int64_t(t.seed), false, 0));
  t.watchdog_s = r.get_number("watchdog_s", t.watchdog_s);
  if (!(t.watchdog_s >= 0)) r.fail("watchdog_s", "must be >= 0 seconds (0: off)");
  r.finish();
}

void parse_data(ObjReader& r, DataConfig& d, const std::string& base_dir) {
  auto resolve = [&](const std::string& p) {
    if (p.empty() || fs::path(p).is_absolute() || base_dir.empty()) return p;
    return (fs::path(base_dir) / p).lexically_normal().string();
  };
  d.train = resolve(r.get_string("train", ""));
  d.val = resolve(r.get_string("val", ""));
  d.reuse = Reuse(r.get_enum("reuse", {"none", "strict", "loose"}, 0));
  if (r.has("unique_tokens")) {
    d.unique_tokens = r.get_number("unique_tokens", 0);
    if (!(d.unique_tokens > 0)) r.fail("unique_tokens", "must be > 0");
    if (d.reuse != Reuse::Strict)
      r.fail("unique_tokens", str("is only used with reuse \"strict\" (reuse is \"", to_string(d.reuse),
                                  "\": none uses D unique tokens, loose D/2)"));
  } else if (d.reuse == Reuse::Strict) {
    r.fail("unique_tokens", "is required with reuse \"strict\"");
  }
  r.finish();
}

}  // namespace

RunConfig parse_run(const json& manifest, const std::string& where, const std::string& base_dir) {
  RunConfig c;
  c.source = manifest;
  c.base_dir = base_dir;
  ObjReader r(manifest, "", where);
  c.name = r.get_string("name", "");
  const json* model = r.child("model");
  if (!model) r.fail("model", "is required");
  {
    ObjReader mr(*model, "model", where);
    parse_model(mr, c.model);
  }
  const json* train = r.child("train");
  if (!train) r.fail("train", "is required (it holds the budget)");
  {
    ObjReader tr(*train, "train", where);
    parse_train(tr, c.train, base_dir);
  }
  if (const json* data = r.child("data")) {
    ObjReader dr(*data, "data", where);
    parse_data(dr, c.data, base_dir);
  }
  if (const json* par = r.child("parallel")) {
    ObjReader pr(*par, "parallel", where);
    c.parallel.tp = to_int(pr, "tp", pr.get_int("tp", 1, false, 1));
    c.parallel.ep = to_int(pr, "ep", pr.get_int("ep", 1, false, 1));
    c.parallel.zero1 = pr.get_bool("zero1", false);
    if (c.parallel.ep > 1 && !c.model.moe.enabled) pr.fail("ep", "is > 1 but the model has no MoE layers");
    pr.finish();
  }
  if (const json* ev = r.child("eval")) {
    ObjReader er(*ev, "eval", where);
    c.eval.every = to_int(er, "every", er.get_int("every", c.eval.every, false, 0));
    c.eval.tokens = er.get_number("tokens", c.eval.tokens);
    if (!(c.eval.tokens > 0)) er.fail("tokens", "must be > 0");
    er.finish();
  }
  if (const json* ck = r.child("checkpoint")) {
    ObjReader cr(*ck, "checkpoint", where);
    c.checkpoint.every = to_int(cr, "every", cr.get_int("every", c.checkpoint.every, false, 0));
    c.checkpoint.keep = to_int(cr, "keep", cr.get_int("keep", c.checkpoint.keep, false, 1));
    cr.finish();
  }
  if (const json* lg = r.child("log")) {
    ObjReader lr(*lg, "log", where);
    c.log.every = to_int(lr, "every", lr.get_int("every", c.log.every, false, 1));
    lr.finish();
  }
  const auto& mc = c.model;
  if (c.parallel.tp > 1) {
    auto& tp = c.parallel.tp;
    ObjReader pr(manifest.at("parallel"), "parallel", where);
    if (mc.n_heads % tp) pr.fail("tp", str(tp, " does not divide model.n_heads (", mc.n_heads, ")"));
    if (mc.d_ffn % tp) pr.fail("tp", str(tp, " does not divide model.d_ffn (", mc.d_ffn, ")"));
    if (mc.moe.enabled && mc.moe.d_expert % tp)
      pr.fail("tp", str(tp, " does not divide model.moe.d_expert (", mc.moe.d_expert, ")"));
    if (mc.moe.enabled && mc.moe.d_shared % tp)
      pr.fail("tp", str(tp, " does not divide model.moe.d_shared (", mc.moe.d_shared, ")"));
  }
  if (c.parallel.ep > 1 && mc.moe.n_experts % c.parallel.ep)
    throw InputError(str(where, ": parallel.ep: ", c.parallel.ep, " does not divide model.moe.n_experts (",
                         mc.moe.n_experts, ")"));
  r.finish();
  return c;
}

void set_dotted(json& manifest, const std::string& dotted_key, const json& value, const std::string& where) {
  MT_INPUT(!dotted_key.empty(), where, ": empty key in override");
  json* node = &manifest;
  size_t start = 0;
  std::string walked;
  while (true) {
    size_t dot = dotted_key.find('.', start);
    std::string part = dotted_key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    MT_INPUT(!part.empty(), where, ": malformed key \"", dotted_key, "\"");
    walked += (walked.empty() ? "" : ".") + part;
    if (!node->is_object())
      throw InputError(str(where, ": cannot set ", dotted_key, ": ",
                           walked.substr(0, walked.size() - part.size() - 1), " is not an object"));
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    if (!node->contains(part) || (*node)[part].is_null()) (*node)[part] = json::object();
    node = &(*node)[part];
    start = dot + 1;
  }
}

void apply_override(json& manifest, const std::string& assignment) {
  auto eq = assignment.find('=');
  MT_INPUT(eq != std::string::npos && eq > 0, "--set ", assignment, ": expected KEY=VALUE (e.g. train.lr=3e-4)");
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  json value;
  try {
    value = json::parse(text);
  } catch (const json::parse_error&) {
    value = text;
  }
  set_dotted(manifest, key, value, "--set " + assignment);
}

bool is_sweep_manifest(const json& manifest) {
  return manifest.is_object() && manifest.contains("runs");
}

Sweep parse_sweep(const json& manifest, const std::string& where, const std::string& base_dir) {
  Sweep s;
  s.base_dir = base_dir;
  MT_INPUT(manifest.is_object(), where, ": a sweep manifest must be a JSON object");
  std::set<std::string> allowed = {"name", "base", "runs", "reference", "description"};
  for (auto it = manifest.begin(); it != manifest.end(); ++it)
    MT_INPUT(allowed.count(it.key()), where, ": ", it.key(), ": unknown key in a sweep manifest (expected name, base, runs, reference, description)");
  MT_INPUT(manifest.contains("name") && manifest["name"].is_string(), where, ": name: a sweep needs a string name");
  s.name = manifest["name"].get<std::string>();
  json base = json::object();
  if (manifest.contains("base")) {
    const json& b = manifest["base"];
    if (b.is_string()) {
      fs::path p(b.get<std::string>());
      if (p.is_relative()) p = fs::path(base_dir) / p;
      base = read_json_file(p.string());
    } else {
      MT_INPUT(b.is_object(), where, ": base: must be a run manifest (object) or the path of one");
      base = b;
    }
  }
  const json& runs = manifest["runs"];
  MT_INPUT(runs.is_array() && !runs.empty(), where, ": runs: must be a non-empty array");
  std::set<std::string> names;
  for (size_t i = 0; i < runs.size(); ++i) {
    const json& r = runs[i];
    std::string rp = str("runs[", i, "]");
    MT_INPUT(r.is_object(), where, ": ", rp, ": must be an object {\"name\": ..., \"a.b\": value, ...}");
    MT_INPUT(r.contains("name") && r["name"].is_string() && !r["name"].get<std::string>().empty(), where,
             ": ", rp, ".name: each run needs a non-empty string name");
    SweepRun run;
    run.name = r["name"].get<std::string>();
    MT_INPUT(run.name.find('/') == std::string::npos && run.name != "." && run.name != "..", where, ": ",
             rp, ".name: \"", run.name, "\" cannot be a folder name");
    MT_INPUT(names.insert(run.name).second, where, ": ", rp, ".name: duplicate run name \"", run.name, "\"");
    run.manifest = base;
    for (auto it = r.begin(); it != r.end(); ++it) {
      if (it.key() == "name") continue;
      if (it.key() == "paper") {
        run.paper = it.value();
        continue;
      }
      set_dotted(run.manifest, it.key(), it.value(), str(where, ": ", rp));
    }
    run.manifest["name"] = run.name;
    s.runs.push_back(std::move(run));
  }
  if (manifest.contains("reference")) {
    MT_INPUT(manifest["reference"].is_string(), where, ": reference: must be the name of a run");
    s.reference = manifest["reference"].get<std::string>();
    MT_INPUT(names.count(s.reference), where, ": reference: no run named \"", s.reference, "\"");
  }
  return s;
}

Manifest load_manifest(const std::string& path, const std::vector<std::string>& overrides) {
  json j = read_json_file(path);
  std::string base_dir = fs::path(path).parent_path().string();
  if (base_dir.empty()) base_dir = ".";
  Manifest m;
  if (is_sweep_manifest(j)) {
    m.is_sweep = true;
    m.sweep = parse_sweep(j, path, base_dir);
  } else {
    m.sweep.base_dir = base_dir;
    SweepRun run;
    run.manifest = j;
    if (j.is_object() && j.contains("name") && j["name"].is_string())
      run.name = j["name"].get<std::string>();
    else
      run.name = fs::path(path).stem().string();
    m.sweep.name = run.name;
    m.sweep.runs.push_back(std::move(run));
  }
  for (auto& run : m.sweep.runs)
    for (auto& o : overrides) apply_override(run.manifest, o);
  return m;
}

}  // namespace mt
