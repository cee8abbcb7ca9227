// Why: the sequence loader is what makes "the same unique data, more epochs" exact (DESIGN.md
// "Data"). The token stream (shards concatenated) is cut into S+1-token windows at stride S; a
// seed-fixed permutation of all windows picks the unique set as its first U = D-hat / S entries, the
// same set for every run with the same seed and D-hat whatever its batch size, layout or model.
// Epoch 0 visits the unique set in that order; epoch e > 0 in a fresh permutation keyed by (seed, e).
// A global batch is the next B sequences of that endless stream (crossing epoch boundaries); dp rank r
// takes sequences [r B/dp, (r+1) B/dp) of it. The position in the stream is the whole state.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/shards.h"
#include "engine/core/json.h"

namespace mt::data {

struct LoaderOptions {
  int seq_len = 0;                 // S
  int64_t unique_tokens = 0;       // D-hat: the unique set is floor(D-hat / S) sequences (at least 1)
  uint64_t seed = 0;
  int batch_size = 0;              // B: sequences per global batch
  int dp_rank = 0, dp_size = 1;    // this rank's slice of each global batch
  bool prefetch = true;            // read the next batch on a background thread
};

// Where sequence windows come from: (shard, first token) of window w, S + 1 tokens, never crossing a
// shard boundary (each shard contributes floor((tokens - 1) / S) windows).
class WindowIndex {
 public:
  WindowIndex(std::shared_ptr<const TokenDataset> ds, int seq_len);
  int64_t size() const { return total_; }
  // Copies window w (S + 1 tokens) into out.
  void read(int64_t w, int32_t* out) const;
  const TokenDataset& dataset() const { return *ds_; }

 private:
  std::shared_ptr<const TokenDataset> ds_;
  int seq_len_;
  std::vector<int64_t> first_;     // first window of each shard; first_.back() = total
  int64_t total_ = 0;
};

class SequenceLoader {
 public:
  // InputError naming both numbers when the data holds fewer than D-hat / S windows.
  SequenceLoader(std::shared_ptr<const TokenDataset> ds, const LoaderOptions& opt);
  ~SequenceLoader();
  SequenceLoader(const SequenceLoader&) = delete;
  SequenceLoader& operator=(const SequenceLoader&) = delete;

  int local_batch() const { return opt_.batch_size / opt_.dp_size; }
  // Fills this rank's slice of the next global batch: local_batch() x (S + 1) tokens.
  void next(int32_t* out);

  // The global stream index of the i-th sequence of all time (0-based), as a window id: what
  // sequence position `i` (counting every rank's sequences) reads. Exposed for tests.
  int64_t window_at(int64_t i) const;

  int64_t unique_sequences() const { return unique_; }
  int64_t unique_tokens() const { return unique_ * opt_.seq_len; }
  int64_t position() const { return position_; }          // global sequences consumed
  double epochs() const { return double(position_) / double(unique_); }

  // {"position": global sequences consumed, "unique_sequences", "seed", "batch_size"}: restore() checks
  // that the unique set is the same (seed, U) and continues from `position`. The stream is defined
  // per sequence, so the batch size and dp layout of the resumed run may differ.
  json state() const;
  void restore(const json& state);

 private:
  void fill(int64_t position, int32_t* out) const;
  void start_prefetch();
  void stop_prefetch();

  WindowIndex index_;
  LoaderOptions opt_;
  int64_t unique_ = 0;
  int64_t position_ = 0;

  // Prefetch: the worker fills `ready_` with the batch at `ready_pos_`.
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> ready_;
  int64_t ready_pos_ = -1, want_pos_ = -1;
  bool quit_ = false;
  std::exception_ptr error_;      // a read failure on the worker, rethrown by next()
};

}  // namespace mt::data
