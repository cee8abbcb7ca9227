// Why: `moetrain data build` makes token shards from raw text (data/build.h) and `moetrain data
// inspect` tells what a dataset spec holds (format, tokens, vocab, tokenizer, splits, a decoded
// sample), checking every token id on the way: a corrupt shard is one line and exit 2.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "app/command.h"
#include "app/format.h"
#include "data/build.h"
#include "data/shards.h"
#include "data/utf8.h"
#include "engine/core/check.h"
#include "engine/run/sample.h"

namespace mt::app {
namespace {

struct BuildArgs {
  data::BuildOptions opt;
  double val_fraction = -1;
  int64_t val_tokens = -1;
  std::string format = "auto", out_format = "native";
};

// One line on stderr, redrawn at most ten times a second (only when stderr is a terminal).
class ProgressBar {
 public:
  ProgressBar() : enabled_(::isatty(2) == 1) {}
  void update(const data::BuildProgress& p) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    double mb = double(p.input_bytes) / 1e6, rate = p.seconds > 0 ? double(p.text_bytes) / 1e6 / p.seconds : 0;
    std::string line;
    if (p.input_total > 0) {
      double f = std::min(1.0, double(p.input_bytes) / double(p.input_total));
      int filled = int(f * 30);
      line = "[" + std::string(size_t(filled), '#') + std::string(size_t(30 - filled), ' ') + "] " +
             fmt_fixed(100 * f, 0) + "% " + fmt_fixed(mb, 1) + "/" + fmt_fixed(double(p.input_total) / 1e6, 1) + " MB";
    } else {
      line = fmt_fixed(mb, 1) + " MB read";
    }
    line += "  " + fmt_fixed(rate, 0) + " MB/s text  " + fmt_count(double(p.tokens)) + " tokens";
    std::fprintf(stderr, "\r%-100s", line.c_str());
    std::fflush(stderr);
  }
  void finish() {
    if (enabled_ && drawn_) std::fprintf(stderr, "\r%-100s\r", "");
  }

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_;
};

void run_build(BuildArgs& a) {
  if (a.val_fraction >= 0) a.opt.val_fraction = a.val_fraction;
  if (a.val_tokens >= 0) a.opt.val_tokens = a.val_tokens;
  a.opt.format = a.format == "jsonl" ? data::InputFormat::Jsonl
                 : a.format == "text" ? data::InputFormat::Text
                                      : data::InputFormat::Auto;
  a.opt.megatron = a.out_format == "megatron";
  ProgressBar bar;
  data::BuildSummary s = data::build_dataset(a.opt, [&](const data::BuildProgress& p) { bar.update(p); });
  bar.finish();
  for (const std::string& w : s.warnings) std::fprintf(stderr, "moetrain: warning: %s\n", w.c_str());
  auto shards = [](int n) { return std::to_string(n) + (n == 1 ? " shard" : " shards"); };
  int64_t tokens = s.train.tokens + s.val.tokens, text = s.train.text_bytes + s.val.text_bytes;
  std::printf("data build: %s: %s tokens (train %s in %s, val %s in %s), %s characters, %s bytes of text, "
              "vocab %d, %.2f s, %.1f MB/s\n",
              a.opt.out_dir.c_str(), fmt_count(double(tokens)).c_str(), fmt_count(double(s.train.tokens)).c_str(),
              shards(s.train.shards).c_str(), fmt_count(double(s.val.tokens)).c_str(), shards(s.val.shards).c_str(),
              fmt_count(double(s.train.characters + s.val.characters)).c_str(), fmt_count(double(text)).c_str(),
              s.vocab_size, s.seconds, s.seconds > 0 ? double(text) / 1e6 / s.seconds : 0.0);
  std::printf("  %lld file%s (%lld JSON Lines, %lld gzip, %lld zstd), %s document%s", (long long)s.files,
              s.files == 1 ? "" : "s", (long long)s.jsonl_files, (long long)s.gzip_files, (long long)s.zstd_files,
              fmt_count(double(s.documents)).c_str(), s.documents == 1 ? "" : "s");
  if (s.eod_token >= 0)
    std::printf(" each ended by token %d", s.eod_token);
  else
    std::printf(" separated by newlines");
  if (s.bad_lines > 0) std::printf(", %lld malformed lines skipped", (long long)s.bad_lines);
  if (s.empty_documents > 0) std::printf(", %lld empty documents skipped", (long long)s.empty_documents);
  std::printf(", %d worker%s\n", s.workers, s.workers == 1 ? "" : "s");
  if (!s.megatron_prefix.empty())
    std::printf("  Megatron-LM indexed dataset: %s/%s.bin + .idx (all splits, one sequence per document)\n",
                a.opt.out_dir.c_str(), s.megatron_prefix.c_str());
}

struct InspectArgs {
  std::string path;
  std::string tokenizer;  // byte or a tokenizer.json, for files without index.json (e.g. a Megatron pair)
  int vocab = 0;
  int sample_chars = 200;
};

// The first `chars` characters of the decoded text, made printable, each line indented.
std::string sample_text(const data::TokenDataset& ds, const data::Tokenizer& tok, int chars) {
  std::string text;
  std::vector<int32_t> ids(256);
  int64_t n_chars = 0;
  for (size_t s = 0; s < ds.shards.size() && n_chars <= chars; ++s) {
    for (int64_t b = 0; b < ds.shards[s].tokens && n_chars <= chars; b += int64_t(ids.size())) {
      int64_t n = std::min<int64_t>(int64_t(ids.size()), ds.shards[s].tokens - b);
      ds.read(s, b, n, ids.data());
      std::string piece = tok.decode(ids.data(), size_t(n));
      n_chars += data::utf8::count_chars(reinterpret_cast<const uint8_t*>(piece.data()), piece.size());
      text += piece;
    }
  }
  // Cut at the lead byte of character number `chars`.
  int64_t seen = 0;
  size_t end = text.size();
  for (size_t i = 0; i < text.size(); ++i) {
    if (data::utf8::is_lead(uint8_t(text[i])) && seen++ == chars) {
      end = i;
      break;
    }
  }
  return quote_sample(text.substr(0, end));
}

std::string count_or_dash(int64_t n) { return n < 0 ? "-" : fmt_count(double(n)); }

void print_split(const data::TokenDataset& ds, const char* name, Table* t) {
  std::string formats;
  for (const data::Shard& s : ds.shards) {
    std::string f = data::to_string(s.format);
    if (formats.find(f) == std::string::npos) formats += (formats.empty() ? "" : ", ") + f;
  }
  t->rows.push_back({name, std::to_string(ds.shards.size()), fmt_count(double(ds.total_tokens())),
                     count_or_dash(ds.characters()), count_or_dash(ds.text_bytes()), formats.empty() ? "-" : formats});
}

void run_inspect(const InspectArgs& a) {
  namespace fs = std::filesystem;
  const bool folder = a.path.rfind("raw:", 0) != 0 && fs::is_directory(a.path);
  std::vector<std::pair<const char*, data::TokenDataset>> splits;
  if (folder) {
    splits.emplace_back("train", data::open_dataset(a.path, data::Split::Train, a.vocab));
    splits.emplace_back("val", data::open_dataset(a.path, data::Split::Val, a.vocab));
  } else {
    splits.emplace_back("all", data::open_dataset(a.path, data::Split::Train, a.vocab));
  }
  const data::TokenDataset& first = splits.front().second;
  // Every token is checked against the vocab before anything is printed.
  int64_t largest = -1;
  for (auto& [name, ds] : splits) largest = std::max(largest, ds.scan());

  std::cout << a.path << ": " << (folder ? "moetrain dataset folder (index.json)" : first.description) << "\n";
  std::optional<data::Tokenizer> tok;
  if (a.tokenizer.empty()) tok = data::load_tokenizer(first.tokenizer);
  else tok = a.tokenizer == "byte" ? data::Tokenizer::byte_level() : data::Tokenizer::from_file(a.tokenizer);
  std::cout << "tokenizer: " << (a.tokenizer.empty() ? first.tokenizer.describe() : tok->describe()) << "\n";
  if (first.vocab_size > 0)
    std::cout << "vocab: " << first.vocab_size << " (every token id checked; largest " << largest << ")\n";
  else
    std::cout << "vocab: unknown (largest token id " << largest << "; give --vocab N to check against it)\n";
  Table t;
  t.header = {"split", "shards", "tokens", "characters", "text bytes", "format"};
  t.left = {true, false, false, false, false, true};
  for (auto& [name, ds] : splits) print_split(ds, name, &t);
  std::cout << t.text();
  if (!folder && first.shards.size() > 1) {
    for (size_t i = 0; i < first.shards.size() && i < 20; ++i)
      std::cout << "  " << first.shards[i].path << ": " << fmt_count(double(first.shards[i].tokens)) << " tokens\n";
    if (first.shards.size() > 20) std::cout << "  ... " << first.shards.size() - 20 << " more\n";
  }
  const data::TokenDataset& sample_from = first.total_tokens() > 0 ? first : splits.back().second;
  if (sample_from.total_tokens() == 0) return;
  if (tok) {
    std::cout << "sample (" << splits.front().first << ", first " << a.sample_chars << " characters):\n"
              << sample_text(sample_from, *tok, a.sample_chars);
  } else {
    std::vector<int32_t> ids(size_t(std::min<int64_t>(32, sample_from.shards[0].tokens)));
    sample_from.read(0, 0, int64_t(ids.size()), ids.data());
    std::cout << "first " << ids.size() << " token ids (no tokenizer to decode them):";
    for (int32_t id : ids) std::cout << " " << id;
    std::cout << "\n";
  }
}

RegisterCommand reg("data", 30, [](CLI::App& app) {
  auto* data = app.add_subcommand("data", "Build token shards from text (build) and inspect a dataset (inspect)");
  data->require_subcommand(1);

  auto b = std::make_shared<BuildArgs>();
  auto* build = data->add_subcommand("build", "Tokenize UTF-8 text or JSON Lines (plain, gzip or zstd; files, globs, "
                                              "folders or - for stdin) into native shards and index.json");
  build->add_option("--input", b->opt.inputs,
                    "files, globs, folders (recursively) or - for stdin; plain, gzip or zstd (by magic bytes); "
                    "read in the order given, each glob's or folder's files sorted by name")
      ->required()
      ->take_all();
  build->add_option("--format", b->format,
                    "auto: JSON Lines for names ending .jsonl / .json (before .gz / .zst), plain text otherwise")
      ->check(CLI::IsMember({"auto", "text", "jsonl"}))
      ->default_val("auto");
  build->add_option("--text-key", b->opt.text_key, "JSON Lines: the field holding a document's text")
      ->default_val("text");
  build->add_flag("--skip-bad-lines", b->opt.skip_bad_lines,
                  "JSON Lines: skip and count malformed lines (default: stop at the first, naming file and line)");
  build->add_option("--workers", b->opt.workers, "tokenizing threads (0: one per core); the output is the same for any")
      ->default_val(0);
  build->add_option("--out-format", b->out_format,
                    "native: shards + index.json; megatron: also OUT/<text-key>_document.bin/.idx (Megatron-LM)")
      ->check(CLI::IsMember({"native", "megatron"}))
      ->default_val("native");
  build->add_option("--out", b->opt.out_dir, "output folder")->required();
  build->add_option("--tokenizer", b->opt.tokenizer, "byte, or the path of a Hugging Face tokenizer.json (byte-level BPE)")
      ->default_val("byte");
  auto* frac = build->add_option("--val-fraction", b->val_fraction,
                                 "share of the tokens at the end of the text for the val split (default 0.005)");
  auto* vt = build->add_option("--val-tokens", b->val_tokens, "tokens at the end of the text for the val split");
  frac->excludes(vt);
  build->add_option("--shard-tokens", b->opt.shard_tokens, "tokens per shard file")->default_val(100'000'000);
  build->callback([b] { run_build(*b); });

  auto ia = std::make_shared<InspectArgs>();
  auto* inspect = data->add_subcommand("inspect", "Format, tokens, vocab, tokenizer, splits and a decoded sample of a "
                                                  "dataset; checks every token id");
  inspect->add_option("path", ia->path, "a folder with index.json, a shard, a glob, a Megatron prefix, or raw:FILE")
      ->required();
  inspect->add_option("--tokenizer", ia->tokenizer,
                      "byte or a tokenizer.json to decode the sample with (files without index.json)");
  inspect->add_option("--vocab", ia->vocab, "vocab size to check token ids against (files without index.json)");
  inspect->add_option("--chars", ia->sample_chars, "characters of decoded sample")->default_val(200);
  inspect->callback([ia] { run_inspect(*ia); });
});

}  // namespace
}  // namespace mt::app
