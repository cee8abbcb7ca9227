// Why: manifest parsing and validation. Each key is read by type from an ObjReader that remembers
// which keys it consumed, so that unknown keys (typos) are errors naming their JSON path.
#include "engine/run/config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
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

std::string resolve_dataset_spec(const std::string& spec, const std::string& base_dir) {
  const bool raw = spec.rfind("raw:", 0) == 0;
  const std::string path = raw ? spec.substr(4) : spec;
  if (path.empty() || fs::path(path).is_absolute() || base_dir.empty()) return spec;
  return (raw ? "raw:" : "") + (fs::path(base_dir) / path).lexically_normal().string();
}

namespace {

// The closed range [lo, hi] a manifest number must lie in, or (lo, hi] with open_lo.
struct Bounds {
  double lo, hi;
  bool open_lo = false, open_hi = false;
};

// 1048576 rather than 1.04858e+06; 1e+15 for the large ones.
std::string number(double d) {
  char buf[32];
  if (d == std::floor(d) && std::fabs(d) < 1e12)
    std::snprintf(buf, sizeof buf, "%.0f", d);
  else
    std::snprintf(buf, sizeof buf, "%.6g", d);
  return buf;
}

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

  // Named getters for numbers. Every number is checked, before any cast, to be finite and within
  // `b`; an absent key is an error for required_*, the default for optional_*, and std::nullopt for
  // *_or_auto, where the string "auto" is also std::nullopt (0 is a number like any other).
  int64_t required_int(const std::string& key, Bounds b) { return as_int(key, need(key), b); }
  int64_t optional_int(const std::string& key, int64_t def, Bounds b) {
    const json* v = find(key);
    return v ? as_int(key, *v, b) : def;
  }
  double required_number(const std::string& key, Bounds b) { return as_number(key, need(key), b); }
  double optional_number(const std::string& key, double def, Bounds b) {
    const json* v = find(key);
    return v ? as_number(key, *v, b) : def;
  }
  std::optional<int64_t> int_or_auto(const std::string& key, Bounds b) {
    const json* v = auto_or_value(key);
    return v ? std::optional<int64_t>(as_int(key, *v, b)) : std::nullopt;
  }
  std::optional<double> number_or_auto(const std::string& key, Bounds b) {
    const json* v = auto_or_value(key);
    return v ? std::optional<double>(as_number(key, *v, b)) : std::nullopt;
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
  const json& need(const std::string& key) {
    const json* v = find(key);
    if (!v) fail(key, "is required");
    return *v;
  }
  const json* auto_or_value(const std::string& key) {
    const json* v = find(key);
    if (v && v->is_string() && v->get_ref<const std::string&>() == "auto") return nullptr;
    if (v && !v->is_number()) fail(key, str("must be a number or \"auto\", got ", describe(*v)));
    return v;
  }
  void check_bounds(const std::string& key, double d, Bounds b) const {
    if (!std::isfinite(d)) fail(key, "must be finite");
    if (d < b.lo || (b.open_lo && d == b.lo))
      fail(key, str("must be ", b.open_lo ? "> " : ">= ", number(b.lo), ", got ", number(d)));
    if (d > b.hi || (b.open_hi && d == b.hi))
      fail(key, str("must be in ", b.open_lo ? "(" : "[", number(b.lo), ", ", number(b.hi), b.open_hi ? ")" : "]",
                    ", got ", number(d)));
  }
  int64_t as_int(const std::string& key, const json& v, Bounds b) const {
    if (!v.is_number()) fail(key, str("must be an integer, got ", describe(v)));
    const double d = v.get<double>();  // exact for the bounds we allow (|x| < 2^53)
    check_bounds(key, d, b);
    if (v.is_number_float() && d != std::floor(d)) fail(key, str("must be an integer, got ", describe(v)));
    return int64_t(d);
  }
  double as_number(const std::string& key, const json& v, Bounds b) const {
    if (!v.is_number()) fail(key, str("must be a number, got ", describe(v)));
    const double d = v.get<double>();
    check_bounds(key, d, b);
    return d;
  }

  const json& obj_;
  std::string path_;
  const std::string& where_;
  std::set<std::string> used_;
};

void parse_moe(ObjReader& r, MoeConfig& m) {
  m.enabled = true;
  m.layout = MoeLayout(r.get_enum("layout", {"full", "1dense", "interleave"}, 1));
  m.n_experts = int(r.required_int("n_experts", {1, kMaxExperts}));
  m.top_k = int(r.required_int("top_k", {1, kMaxExperts}));
  m.d_expert = int(r.required_int("d_expert", {1, kMaxWidth}));
  m.d_shared = int(r.optional_int("d_shared", 0, {0, kMaxWidth}));
  m.normalize_gates = r.get_bool("normalize_gates", false);
  m.balance_coef = r.optional_number("balance_coef", m.balance_coef, {0, 1e6});
  m.balance_group = int(r.optional_int("balance_group", m.balance_group, {0, kMaxBatch}));
  m.z_loss_coef = r.optional_number("z_loss_coef", m.z_loss_coef, {0, 1e6});
  m.capacity_factor = r.optional_number("capacity_factor", m.capacity_factor, {0, 1e6});  // 0: dropless
  m.balance = MoeBalance(r.get_enum("balance", {"aux", "bias", "aux+bias"}, 0));
  if (r.has("bias_rate") && !m.uses_bias())
    r.fail("bias_rate", str("is set but ", r.key_path("balance"), " is aux (no expert bias): use bias or aux+bias"));
  m.bias_rate = r.optional_number("bias_rate", m.bias_rate, {0, 1, true});
  if (m.top_k > m.n_experts)
    r.fail("top_k", str(m.top_k, " is larger than ", r.key_path("n_experts"), " (", m.n_experts, ")"));
  if (m.normalize_gates && m.top_k == 1)
    r.fail("normalize_gates", "with top_k = 1 the renormalised gate is always 1 and the router gets no gradient");
  r.finish();
}

void parse_model(ObjReader& r, ModelConfig& m) {
  m.vocab_size = int(r.optional_int("vocab_size", m.vocab_size, {2, kMaxVocab}));
  m.d_model = int(r.required_int("d_model", {1, kMaxWidth}));
  m.n_layers = int(r.required_int("n_layers", {1, kMaxLayers}));
  m.n_heads = int(r.required_int("n_heads", {1, kMaxWidth}));
  if (r.has("head_dim")) {
    m.head_dim = int(r.required_int("head_dim", {1, kMaxWidth}));
    if (int64_t(m.n_heads) * m.head_dim > kMaxWidth)
      r.fail("head_dim", str("n_heads x head_dim (", int64_t(m.n_heads) * m.head_dim, ") is larger than ", kMaxWidth));
  } else {
    if (m.d_model % m.n_heads != 0)
      r.fail("head_dim", str("is not given and d_model (", m.d_model, ") is not a multiple of n_heads (",
                             m.n_heads, ")"));
    m.head_dim = m.d_model / m.n_heads;
  }
  m.d_ffn = int(r.optional_int("d_ffn", 0, {0, kMaxWidth}));
  m.seq_len = int(r.optional_int("seq_len", m.seq_len, {1, kMaxSeqLen}));
  m.norm_eps = r.optional_number("norm_eps", m.norm_eps, {0, 1, true});
  m.tie_embeddings = r.get_bool("tie_embeddings", false);
  m.attention_impl = AttentionImpl(r.get_enum("attention_impl", {"native", "cudnn"}, 0));
  if (const json* moe = r.child("moe")) {
    ObjReader mr(*moe, r.key_path("moe"), r.where());
    parse_moe(mr, m.moe);
  }
  if (m.n_dense_layers() > 0 && m.d_ffn <= 0)
    r.fail("d_ffn", str("is required (> 0): the model has ", m.n_dense_layers(), " dense layer(s)"));
  // Parameter counts are int64 products of these sizes: bound the total before anything multiplies them.
  const double ffn = std::max<double>(m.d_ffn, double(m.moe.n_experts) * m.moe.d_expert + m.moe.d_shared);
  const double params = double(m.n_layers) * m.d_model * (4.0 * m.n_heads * m.head_dim + 3.0 * ffn + m.moe.n_experts) +
                        2.0 * m.vocab_size * m.d_model;
  if (params > kMaxParams) r.fail("d_model", str("the model would have ", params, " parameters, more than ", kMaxParams));
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
    t.tokens = r.required_number("tokens", {0, kMaxTokens, true});
  } else if (r.has("compute")) {
    t.budget = Budget::Compute;
    t.compute = r.required_number("compute", {0, kMaxCompute, true});
  } else {
    t.budget = Budget::MatchCompute;
    t.match_compute = r.get_string("match_compute", "");
    if (t.match_compute.empty()) r.fail("match_compute", "must name a manifest");
    fs::path p(t.match_compute);
    if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
    t.match_compute = p.lexically_normal().string();
  }
  t.batch_size = int(r.int_or_auto("batch_size", {1, kMaxBatch}).value_or(0));
  t.micro_batch_size = int(r.int_or_auto("micro_batch_size", {1, kMaxBatch}).value_or(0));
  if (t.batch_size > 0 && t.micro_batch_size > t.batch_size)
    r.fail("micro_batch_size", str(t.micro_batch_size, " is larger than train.batch_size (", t.batch_size, ")"));
  t.lr = r.number_or_auto("lr", {0, kMaxFloat, true}).value_or(0);  // applied in fp32: finite there
  t.min_lr = r.optional_number("min_lr", t.min_lr, {0, kMaxFloat});
  t.warmup_iters = int(r.int_or_auto("warmup_iters", {0, kMaxSteps}).value_or(-1));
  t.weight_decay = r.optional_number("weight_decay", t.weight_decay, {0, 1e3});
  t.grad_clip = r.optional_number("grad_clip", t.grad_clip, {0, 1e12});  // 0: off
  t.beta1 = r.optional_number("beta1", t.beta1, {0, 1, false, true});
  t.beta2 = r.optional_number("beta2", t.beta2, {0, 1, false, true});
  t.eps = r.optional_number("eps", t.eps, {0, 1, true});
  t.seed = uint64_t(r.optional_int("seed", int64_t(t.seed), {0, 9e15}));
  t.watchdog_s = r.optional_number("watchdog_s", t.watchdog_s, {0, 1e7});  // 0: off
  r.finish();
}

void parse_data(ObjReader& r, DataConfig& d, const std::string& base_dir) {
  d.train = resolve_dataset_spec(r.get_string("train", ""), base_dir);
  d.val = resolve_dataset_spec(r.get_string("val", ""), base_dir);
  d.reuse = Reuse(r.get_enum("reuse", {"none", "strict", "loose"}, 0));
  if (r.has("unique_tokens")) {
    d.unique_tokens = r.required_number("unique_tokens", {0, kMaxTokens, true});
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
    c.parallel.tp = int(pr.optional_int("tp", 1, {1, kMaxRanks}));
    c.parallel.ep = int(pr.optional_int("ep", 1, {1, kMaxRanks}));
    c.parallel.zero1 = pr.get_bool("zero1", false);
    if (c.parallel.ep > 1 && !c.model.moe.enabled) pr.fail("ep", "is > 1 but the model has no MoE layers");
    pr.finish();
  }
  if (const json* ev = r.child("eval")) {
    ObjReader er(*ev, "eval", where);
    c.eval.every = int(er.optional_int("every", c.eval.every, {0, kMaxSteps}));
    c.eval.tokens = er.optional_number("tokens", c.eval.tokens, {1, kMaxEvalTokens});
    c.eval.sample_tokens = int(er.optional_int("sample_tokens", c.eval.sample_tokens, {0, 1 << 16}));
    er.finish();
  }
  if (const json* ck = r.child("checkpoint")) {
    ObjReader cr(*ck, "checkpoint", where);
    c.checkpoint.every = int(cr.optional_int("every", c.checkpoint.every, {0, kMaxSteps}));
    c.checkpoint.keep = int(cr.optional_int("keep", c.checkpoint.keep, {1, 1e6}));
    cr.finish();
  }
  if (const json* lg = r.child("log")) {
    ObjReader lr(*lg, "log", where);
    c.log.every = int(lr.optional_int("every", c.log.every, {1, kMaxSteps}));
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
  MT_INPUT(std::count(dotted_key.begin(), dotted_key.end(), '.') < kMaxJsonDepth, where, ": key \"",
           dotted_key.substr(0, 40), "...\" is nested deeper than ", kMaxJsonDepth, " levels");
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
    value = parse_json(text, "--set " + key);
  } catch (const InputError&) {
    value = text;  // not JSON (or not a number we can hold): a string, which the key's type check rejects if need be
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
