// Why: "the same unique data, more epochs" is only exact if the loader shows every sequence of the
// unique set exactly once per epoch, across data-parallel ranks, whatever the batch size or layout,
// and if a resumed run continues the very same stream. The shards here hold token = position in the
// whole stream, so every window names itself by its first token.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "data/eval.h"
#include "data/loader.h"
#include "data/permutation.h"
#include "engine/core/check.h"
#include "tests/test_data_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using mt::data::LoaderOptions;
using mt::data::SequenceLoader;
using mt::data::TokenDataset;

namespace {

constexpr int kS = 8;
// Five shards; the last two are too short for more than 0 and exactly 1 window of S + 1 tokens.
const std::vector<int64_t> kShardTokens = {1000, 517, 33, 5, 9};

struct Fixture {
  std::shared_ptr<const TokenDataset> ds;
  std::vector<int64_t> shard_begin;  // global position of each shard's first token
};

// Native v1 shards whose token at global position p is p (all < 65536).
Fixture make_dataset(const std::string& name) {
  const std::string dir = mt::test::scratch_dir(name);
  Fixture f;
  uint32_t pos = 0;
  for (size_t s = 0; s < kShardTokens.size(); ++s) {
    f.shard_begin.push_back(pos);
    std::vector<uint32_t> t(size_t(kShardTokens[s]));
    std::iota(t.begin(), t.end(), pos);
    pos += uint32_t(t.size());
    mt::test::write_bytes(dir + "/shard_" + std::to_string(s) + ".bin", mt::test::native_shard(t, 1));
  }
  f.shard_begin.push_back(pos);
  f.ds = std::make_shared<const TokenDataset>(mt::data::open_dataset(dir + "/shard_*.bin", mt::data::Split::Train, 65536));
  return f;
}

int64_t expected_windows() {
  int64_t n = 0;
  for (int64_t t : kShardTokens) n += t > kS ? (t - 1) / kS : 0;
  return n;
}

// A window must be S + 1 consecutive positions starting at a multiple of S inside one shard.
void check_window(const Fixture& f, const int32_t* w) {
  auto it = std::upper_bound(f.shard_begin.begin(), f.shard_begin.end(), int64_t(w[0]));
  REQUIRE(it != f.shard_begin.begin());
  const int64_t begin = *(it - 1), end = *it;
  REQUIRE((w[0] - begin) % kS == 0);
  REQUIRE(w[0] + kS < end);  // its last token is still in the shard
  for (int t = 1; t <= kS; ++t) REQUIRE(w[t] == w[0] + t);
}

LoaderOptions options(int64_t unique, int batch, int dp_rank, int dp_size, bool prefetch, uint64_t seed = 7) {
  LoaderOptions o;
  o.seq_len = kS;
  o.unique_tokens = unique * kS;
  o.seed = seed;
  o.batch_size = batch;
  o.dp_rank = dp_rank;
  o.dp_size = dp_size;
  o.prefetch = prefetch;
  return o;
}

// The first token of every sequence of `steps` global batches, in global order (rank 0's slice,
// then rank 1's, ...), read through dp_size loaders.
std::vector<int32_t> global_stream(const Fixture& f, int64_t unique, int batch, int dp_size, int steps, bool prefetch,
                                   uint64_t seed = 7) {
  std::vector<std::unique_ptr<SequenceLoader>> ranks;
  for (int r = 0; r < dp_size; ++r)
    ranks.push_back(std::make_unique<SequenceLoader>(f.ds, options(unique, batch, r, dp_size, prefetch, seed)));
  std::vector<int32_t> out;
  std::vector<int32_t> buf(size_t(batch / dp_size) * (kS + 1));
  for (int step = 0; step < steps; ++step) {
    for (auto& l : ranks) {
      REQUIRE(l->local_batch() == batch / dp_size);
      l->next(buf.data());
      for (int i = 0; i < l->local_batch(); ++i) {
        check_window(f, buf.data() + size_t(i) * (kS + 1));
        out.push_back(buf[size_t(i) * (kS + 1)]);
      }
    }
  }
  return out;
}

std::vector<int32_t> slice(const std::vector<int32_t>& v, int64_t begin, int64_t n) {
  return std::vector<int32_t>(v.begin() + begin, v.begin() + begin + n);
}

}  // namespace

TEST_CASE("permutation: a bijection of 0..n-1 that depends on the key", "[data][loader]") {
  for (uint64_t n : {1ull, 2ull, 3ull, 5ull, 17ull, 64ull, 1000ull, 4097ull}) {
    mt::data::Permutation p(n, 42), q(n, 43);
    std::vector<char> seen(n, 0);
    int moved = 0, differ = 0;
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t j = p(i);
      REQUIRE(j < n);
      REQUIRE(seen[j] == 0);
      seen[j] = 1;
      moved += j != i;
      differ += q(i) != j;
    }
    if (n >= 17) {
      CHECK(moved > int(n / 2));
      CHECK(differ > int(n / 2));
    }
  }
}

TEST_CASE("loader: windows are S+1 tokens at stride S and never cross shards", "[data][loader]") {
  Fixture f = make_dataset("loader_windows");
  mt::data::WindowIndex index(f.ds, kS);
  REQUIRE(index.size() == expected_windows());
  std::set<int32_t> firsts;
  std::vector<int32_t> w(kS + 1);
  for (int64_t i = 0; i < index.size(); ++i) {
    index.read(i, w.data());
    check_window(f, w.data());
    firsts.insert(w[0]);
  }
  REQUIRE(int64_t(firsts.size()) == index.size());
  // The one-window shard of 9 tokens is there; the 5-token shard gives none.
  CHECK(firsts.count(int32_t(f.shard_begin[4])) == 1);
  CHECK(firsts.count(int32_t(f.shard_begin[3])) == 0);
}

TEST_CASE("loader: each epoch shows the unique set exactly once, over any dp and batch size", "[data][loader]") {
  Fixture f = make_dataset("loader_epochs");
  const int64_t unique = 150;  // of 193 windows; not a multiple of any batch size below
  const int epochs = 3;
  // The reference stream: dp 1, batch 6.
  const int steps_ref = int((unique * epochs + 5) / 6);
  const std::vector<int32_t> ref = global_stream(f, unique, 6, 1, steps_ref, false);
  std::set<int32_t> unique_set;
  for (int e = 0; e < epochs; ++e) {
    std::vector<int32_t> ep = slice(ref, e * unique, unique);
    std::set<int32_t> s(ep.begin(), ep.end());
    INFO("epoch " << e);
    REQUIRE(int64_t(s.size()) == unique);  // no sequence twice within an epoch
    if (e == 0) unique_set = s;
    REQUIRE(s == unique_set);              // and the same set every epoch
  }
  // Later epochs are reshuffled: a different order each time.
  CHECK(slice(ref, 0, unique) != slice(ref, unique, unique));
  CHECK(slice(ref, unique, unique) != slice(ref, 2 * unique, unique));

  // The same stream, sequence for sequence, whatever the batch size and dp (the global batch is the
  // next B sequences; rank r takes its slice).
  for (auto [batch, dp] : std::vector<std::pair<int, int>>{{6, 2}, {6, 3}, {4, 1}, {4, 2}, {10, 2}, {9, 3}}) {
    INFO("batch " << batch << " dp " << dp);
    const int steps = int((unique * epochs + batch - 1) / batch);
    std::vector<int32_t> s = global_stream(f, unique, batch, dp, steps, (batch + dp) % 2 == 0);
    REQUIRE(int64_t(s.size()) >= unique * epochs);
    REQUIRE(slice(s, 0, unique * epochs) == slice(ref, 0, unique * epochs));
  }

  // The unique set depends on the seed and on D-hat only: a smaller D-hat is a prefix of the same
  // permutation (a subset), another seed picks another set.
  std::vector<int32_t> small = global_stream(f, 40, 4, 1, 10, false);
  std::set<int32_t> small_set(small.begin(), small.end());
  REQUIRE(small_set.size() == 40);
  CHECK(std::includes(unique_set.begin(), unique_set.end(), small_set.begin(), small_set.end()));
  CHECK(slice(small, 0, 40) == slice(ref, 0, 40));
  std::vector<int32_t> other = global_stream(f, unique, 6, 1, 25, false, 8);
  CHECK(std::set<int32_t>(other.begin(), other.end()) != unique_set);
}

TEST_CASE("loader: the whole data as the unique set still visits every window once per epoch", "[data][loader]") {
  Fixture f = make_dataset("loader_all");
  const int64_t n = expected_windows();
  std::vector<int32_t> s = global_stream(f, n, 1, 1, int(2 * n), true);
  for (int e = 0; e < 2; ++e) REQUIRE(std::set<int32_t>(s.begin() + e * n, s.begin() + (e + 1) * n).size() == size_t(n));
}

TEST_CASE("loader: prefetch on and off give the same stream", "[data][loader]") {
  Fixture f = make_dataset("loader_prefetch");
  for (int dp : {1, 2}) {
    for (int r = 0; r < dp; ++r) {
      SequenceLoader a(f.ds, options(120, 8, r, dp, true)), b(f.ds, options(120, 8, r, dp, false));
      std::vector<int32_t> x(size_t(a.local_batch()) * (kS + 1)), y(x.size());
      for (int step = 0; step < 40; ++step) {
        a.next(x.data());
        b.next(y.data());
        REQUIRE(x == y);
      }
      REQUIRE(a.position() == 40 * 8);
      CHECK(a.epochs() == Approx(40.0 * 8 / 120));
    }
  }
}

TEST_CASE("loader: a fresh loader restored from state() yields exactly the remaining sequences", "[data][loader]") {
  Fixture f = make_dataset("loader_resume");
  const int64_t unique = 100;
  const int batch = 6, total_steps = 60, stop = 23;  // 23 x 6 = 138: mid-epoch 1
  const std::vector<int32_t> full = global_stream(f, unique, batch, 2, total_steps, false);

  std::vector<std::unique_ptr<SequenceLoader>> ranks;
  for (int r = 0; r < 2; ++r) ranks.push_back(std::make_unique<SequenceLoader>(f.ds, options(unique, batch, r, 2, true)));
  std::vector<int32_t> buf(size_t(batch / 2) * (kS + 1));
  for (int step = 0; step < stop; ++step)
    for (auto& l : ranks) l->next(buf.data());
  const mt::json state = ranks[0]->state();
  REQUIRE(state == ranks[1]->state());
  REQUIRE(state["position"] == stop * batch);

  for (bool prefetch : {true, false}) {
    INFO("prefetch " << prefetch);
    // Fresh loaders on both ranks, restored: the rest of the stream.
    std::vector<int32_t> rest;
    std::vector<std::unique_ptr<SequenceLoader>> fresh;
    for (int r = 0; r < 2; ++r) {
      fresh.push_back(std::make_unique<SequenceLoader>(f.ds, options(unique, batch, r, 2, prefetch)));
      if (prefetch) fresh.back()->next(buf.data());  // a prefetched batch in flight must not leak through
      fresh.back()->restore(mt::json::parse(state.dump()));
    }
    for (int step = stop; step < total_steps; ++step)
      for (auto& l : fresh) {
        l->next(buf.data());
        for (int i = 0; i < l->local_batch(); ++i) rest.push_back(buf[size_t(i) * (kS + 1)]);
      }
    REQUIRE(rest == slice(full, int64_t(stop) * batch, int64_t(total_steps - stop) * batch));
  }

  // Another layout resumes the same stream: dp 3 with the same global batch.
  SequenceLoader r0(f.ds, options(unique, batch, 0, 3, true));
  r0.restore(state);
  std::vector<int32_t> b3(size_t(r0.local_batch()) * (kS + 1));
  r0.next(b3.data());
  CHECK(b3[0] == full[size_t(stop * batch)]);
  CHECK(b3[kS + 1] == full[size_t(stop * batch + 1)]);

  // A different unique set is refused.
  SequenceLoader other_seed(f.ds, options(unique, batch, 0, 2, false, 99));
  CHECK_THROWS_AS(other_seed.restore(state), mt::InputError);
  SequenceLoader other_unique(f.ds, options(unique + 1, batch, 0, 2, false));
  CHECK_THROWS_AS(other_unique.restore(state), mt::InputError);
  CHECK_THROWS_AS(other_unique.restore(mt::json{{"position", 5}}), mt::InputError);
  CHECK_THROWS_AS(other_unique.restore(mt::json{{"position", "x"}, {"unique_sequences", 101}, {"seed", 7}}),
                  mt::InputError);
}

TEST_CASE("loader: more unique tokens than the data holds is an InputError naming both numbers", "[data][loader]") {
  Fixture f = make_dataset("loader_too_many");
  const int64_t have = expected_windows() * kS;  // 1544
  LoaderOptions o = options(0, 4, 0, 1, true);
  o.unique_tokens = have + kS + 5;  // one window more than the data has
  const std::string msg = mt::test::input_error([&] { SequenceLoader l(f.ds, o); });
  INFO(msg);
  CHECK(msg.find(std::to_string(have + kS + 5)) != std::string::npos);
  CHECK(msg.find(std::to_string(have)) != std::string::npos);
  o.unique_tokens = have + kS - 1;  // rounds down to exactly what the data holds
  SequenceLoader ok(f.ds, o);
  CHECK(ok.unique_sequences() == expected_windows());
  CHECK(ok.unique_tokens() == have);
}

TEST_CASE("loader: a bad token id fails next() with an InputError, with or without prefetch", "[data][loader]") {
  Fixture f = make_dataset("loader_bad_token");
  // The same shards against a vocab of 1000: every window past position 1000 holds a bad id.
  auto small_vocab = std::make_shared<const TokenDataset>(
      mt::data::open_dataset(f.ds->spec, mt::data::Split::Train, 1000));
  for (bool prefetch : {true, false}) {
    INFO("prefetch " << prefetch);
    SequenceLoader l(small_vocab, options(expected_windows(), 16, 0, 1, prefetch));
    std::vector<int32_t> buf(16 * (kS + 1));
    std::string msg;
    for (int step = 0; step < 13 && msg.empty(); ++step) {
      try {
        l.next(buf.data());
      } catch (const mt::InputError& e) {
        msg = e.what();
      }
    }
    CHECK(msg.find(">= the vocab size 1000") != std::string::npos);
  }
}

// ---- evaluation set -------------------------------------------------------------------------------

namespace {

// A byte-level dataset folder whose val split is `text` (one native shard plus index.json).
std::shared_ptr<const TokenDataset> byte_val_split(const std::string& dir, const std::string& text) {
  std::vector<uint32_t> t(text.begin(), text.end());
  for (auto& v : t) v &= 0xFF;
  mt::test::write_bytes(dir + "/val_000000.bin", mt::test::native_shard(t, 1));
  mt::test::write_file(dir + "/index.json", mt::json{{"format", "moetrain"},
                                                      {"version", 1},
                                                      {"tokenizer", {{"type", "byte"}}},
                                                      {"vocab_size", 256},
                                                      {"splits", {{"val", {{{"file", "val_000000.bin"},
                                                                             {"tokens", t.size()}}}}}}}
                                                .dump());
  return std::make_shared<const TokenDataset>(mt::data::open_dataset(dir, mt::data::Split::Val, 256));
}

}  // namespace

TEST_CASE("eval set: sizes round to the multiple and characters count the target text", "[data][eval]") {
  const std::string dir = mt::test::scratch_dir("eval_set");
  // Text built from known characters (1 to 4 UTF-8 bytes each), so the count below needs no decoder.
  const std::vector<std::string> alphabet = {"a", "b", " ", "\n", "é", "ß", "€", "中", "文", "😀", "𝄞", "z"};
  std::string text;
  std::vector<size_t> char_start;  // byte offset of each character
  for (int i = 0; i < 700; ++i) {
    char_start.push_back(text.size());
    text += alphabet[size_t(i * 7 + i / 5) % alphabet.size()];
  }
  auto val = byte_val_split(dir, text);
  const int S = 16;
  const int64_t windows = (int64_t(text.size()) - 1) / S;

  struct Case { int64_t tokens; int multiple; int64_t expect; };
  for (const Case& c : std::vector<Case>{{100, 4, 4},             // 6 windows asked -> 4
                                         {16, 4, 4},              // fewer than one step -> one step
                                         {160, 1, 10},
                                         {1'000'000, 3, windows / 3 * 3}}) {
    INFO("tokens " << c.tokens << " multiple " << c.multiple);
    mt::data::EvalSet set(val, S, c.tokens, c.multiple);
    REQUIRE(set.sequences() == c.expect);
    REQUIRE(set.target_tokens() == c.expect * S);
    // The windows are the first ones of the split, in order.
    for (int64_t i = 0; i < set.sequences(); ++i)
      for (int t = 0; t <= S; ++t) REQUIRE(set.window(i)[t] == int32_t(uint8_t(text[size_t(i * S + t)])));
    // Targets are bytes [1, 1 + n S): count the characters that start there.
    const size_t lo = 1, hi = 1 + size_t(set.target_tokens());
    int64_t chars = std::count_if(char_start.begin(), char_start.end(), [&](size_t b) { return b >= lo && b < hi; });
    CHECK(set.characters() == double(chars));
    CHECK(set.text_bytes() == double(hi - lo));
  }
  // Fewer windows than one evaluation step needs.
  CHECK_THROWS_AS(mt::data::EvalSet(val, S, 100, int(windows) + 1), mt::InputError);

  // Without a tokenizer (a bare shard) there are no characters: only loss can be reported.
  auto bare = std::make_shared<const TokenDataset>(
      mt::data::open_dataset(dir + "/val_000000.bin", mt::data::Split::Val, 256));
  mt::data::EvalSet no_chars(bare, S, 64, 2);
  CHECK(no_chars.sequences() == 4);
  CHECK(no_chars.characters() < 0);

  mt::data::EvalResult r;
  r.nll_sum = 100 * std::log(2.0);
  r.tokens = 50;
  r.characters = 25;
  r.text_bytes = 40;
  CHECK(r.loss() == Approx(2 * std::log(2.0)));
  CHECK(r.bpc() == Approx(4.0));
  CHECK(r.bits_per_byte() == Approx(2.5));
  r.characters = -1;
  CHECK(r.bpc() < 0);
}
