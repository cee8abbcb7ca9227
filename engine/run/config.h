// Why: a run is described by a JSON manifest; this is its typed form and the one place that parses
// and validates it. Every error names the JSON path of the offending key (exit 2). Defaults are the
// paper's Table 4 recipe. A sweep manifest is a base run manifest plus named runs of dotted overrides.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/core/json.h"
#include "engine/model/model_config.h"

namespace mt {

// Sane bounds of manifest numbers (checked before any cast; see ObjReader in config.cpp).
constexpr double kMaxTokens = 1e15;       // train.tokens, data.unique_tokens, and D from a compute budget
constexpr double kMaxCompute = 1e30;      // train.compute (FLOPs)
constexpr double kMaxEvalTokens = 1e12;   // eval.tokens
constexpr double kMaxSteps = 1e9;         // warmup_iters, every-N-steps keys
constexpr double kMaxBatch = 1 << 24;     // sequences in a batch or micro-batch
constexpr double kMaxWidth = 1 << 20;     // d_model, d_ffn, d_expert, n_heads x head_dim
constexpr double kMaxLayers = 1 << 14;
constexpr double kMaxExperts = 1 << 16;
constexpr double kMaxVocab = 1 << 24;
constexpr double kMaxSeqLen = 1 << 24;
constexpr double kMaxRanks = 1 << 16;     // parallel.tp, parallel.ep
constexpr double kMaxParams = 1e14;       // the model's parameter count
constexpr double kMaxFloat = 3.4e38;      // numbers used in fp32 (lr, min_lr)

enum class Reuse { None, Strict, Loose };
enum class Budget { Tokens, Compute, MatchCompute };

const char* to_string(Reuse reuse);

// The manifest's "train" object: the budget and batch here, the AdamW recipe in OptimConfig.
struct TrainConfig : OptimConfig {
  Budget budget = Budget::Tokens;
  double tokens = 0;              // D (consumed tokens) when budget is Tokens
  double compute = 0;             // C (FLOPs) when budget is Compute
  std::string match_compute;      // manifest whose C this run takes (resolved path)
  int batch_size = 0;             // B in sequences; 0 = "auto" (Step Law; the manifest says "auto", 0 is an error)
  int micro_batch_size = 0;       // sequences per micro-batch per data-parallel rank; 0 = "auto" (B / dp)
  uint64_t seed = 1234;
  double watchdog_s = 600;         // abort the job when a rank finishes no step for this long (0: off)
};

struct DataConfig {
  std::string train;              // folder with index.json, a glob of shards, or a Megatron prefix
  std::string val;
  double unique_tokens = 0;       // D-hat for reuse strict (0: not given)
  Reuse reuse = Reuse::None;
};

struct ParallelConfig {
  int tp = 1;
  int ep = 1;
  bool zero1 = false;             // shard Adam state over data-parallel ranks
};

struct EvalConfig {
  int every = 0;                  // steps between evaluations (0: only at the end)
  double tokens = 1 << 20;        // validation tokens per evaluation
  int sample_tokens = 0;          // tokens of text generated and printed at each evaluation (0: none)
};

struct CheckpointConfig {
  int every = 1000;               // steps between checkpoints (0: only at the end)
  int keep = 2;                   // newest checkpoints kept
};

struct LogConfig {
  int every = 10;
};

struct RunConfig {
  std::string name;
  ModelConfig model;
  TrainConfig train;
  DataConfig data;
  ParallelConfig parallel;
  EvalConfig eval;
  CheckpointConfig checkpoint;
  LogConfig log;
  json source;                    // the manifest as given (after --set overrides)
  std::string base_dir;           // folder of the manifest file (relative paths resolve here)
};

// A dataset spec of a manifest made relative to base_dir unless absolute; a "raw:" prefix is kept
// and the path after it resolved.
std::string resolve_dataset_spec(const std::string& spec, const std::string& base_dir);

// Parses and validates a run manifest; `where` names the source in messages (a file, or a sweep run).
RunConfig parse_run(const json& manifest, const std::string& where, const std::string& base_dir);

// Applies "a.b.c=value" to a manifest: value is parsed as JSON when it is valid JSON, else taken as a
// string. Creates intermediate objects. An empty key or a path through a non-object is an error.
void apply_override(json& manifest, const std::string& assignment);
void set_dotted(json& manifest, const std::string& dotted_key, const json& value,
                const std::string& where);

struct SweepRun {
  std::string name;
  json manifest;                  // base with this run's overrides applied
  json paper;                     // optional published values for this row (shown by plan)
};

struct Sweep {
  std::string name;
  std::string reference;          // run whose val BPC is the baseline of delta BPC ("" if none)
  std::vector<SweepRun> runs;
  std::string base_dir;
};

bool is_sweep_manifest(const json& manifest);
// Parses a sweep manifest (runs are validated when parsed with parse_run).
Sweep parse_sweep(const json& manifest, const std::string& where, const std::string& base_dir);

// A manifest file: either a single run or a sweep. Overrides apply to the run, or to every run.
struct Manifest {
  bool is_sweep = false;
  Sweep sweep;                    // is_sweep: the runs; otherwise one run named after the file
};
Manifest load_manifest(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace mt
