// Why: see loader.h. The permutations are data/permutation.h's keyed Feistel bijections, so the
// loader needs no table whatever the number of windows, and a position alone restores its state.
#include "data/loader.h"

#include <algorithm>
#include <exception>

#include "data/permutation.h"
#include "engine/core/check.h"

namespace mt::data {

WindowIndex::WindowIndex(std::shared_ptr<const TokenDataset> ds, int seq_len) : ds_(std::move(ds)), seq_len_(seq_len) {
  MT_CHECK(seq_len_ > 0, "sequence length must be positive");
  first_.reserve(ds_->shards.size() + 1);
  for (const Shard& s : ds_->shards) {
    first_.push_back(total_);
    total_ += s.tokens > seq_len_ ? (s.tokens - 1) / seq_len_ : 0;
  }
  first_.push_back(total_);
}

void WindowIndex::read(int64_t w, int32_t* out) const {
  MT_CHECK(w >= 0 && w < total_, "window ", w, " out of range [0, ", total_, ")");
  size_t s = size_t(std::upper_bound(first_.begin(), first_.end(), w) - first_.begin()) - 1;
  ds_->read(s, (w - first_[s]) * seq_len_, seq_len_ + 1, out);
}

namespace {
constexpr uint64_t kUniqueSetKey = 0x756E69717565ull;  // "unique"
uint64_t epoch_key(uint64_t seed, int64_t epoch) { return mix64(mix64(seed ^ 0x65706F6368ull) + uint64_t(epoch)); }
}  // namespace

SequenceLoader::SequenceLoader(std::shared_ptr<const TokenDataset> ds, const LoaderOptions& opt)
    : index_(std::move(ds), opt.seq_len), opt_(opt) {
  MT_CHECK(opt_.batch_size > 0 && opt_.dp_size > 0 && opt_.batch_size % opt_.dp_size == 0,
           "global batch ", opt_.batch_size, " does not split over ", opt_.dp_size, " data-parallel ranks");
  MT_CHECK(opt_.dp_rank >= 0 && opt_.dp_rank < opt_.dp_size, "bad dp rank");
  unique_ = std::max<int64_t>(1, opt_.unique_tokens / opt_.seq_len);
  MT_INPUT(unique_ <= index_.size(), index_.dataset().spec, ": the run asks for ", opt_.unique_tokens,
           " unique tokens (", unique_, " sequences of ", opt_.seq_len, "), but the data holds only ",
           index_.size() * int64_t(opt_.seq_len), " (", index_.size(), " sequences)");
  if (opt_.prefetch) start_prefetch();
}

SequenceLoader::~SequenceLoader() { stop_prefetch(); }

int64_t SequenceLoader::window_at(int64_t i) const {
  const Permutation all(uint64_t(index_.size()), mix64(opt_.seed ^ kUniqueSetKey));
  int64_t epoch = i / unique_, p = i % unique_;
  if (epoch > 0) p = int64_t(Permutation(uint64_t(unique_), epoch_key(opt_.seed, epoch))(uint64_t(p)));
  return int64_t(all(uint64_t(p)));
}

void SequenceLoader::fill(int64_t position, int32_t* out) const {
  const int64_t first = position + int64_t(opt_.dp_rank) * local_batch();
  const size_t stride = size_t(opt_.seq_len) + 1;
  for (int i = 0; i < local_batch(); ++i) index_.read(window_at(first + i), out + size_t(i) * stride);
}

void SequenceLoader::next(int32_t* out) {
  const size_t n = size_t(local_batch()) * size_t(opt_.seq_len + 1);
  bool have = false;
  if (worker_.joinable()) {
    std::unique_lock<std::mutex> lock(mu_);
    if (want_pos_ == position_) {
      cv_.wait(lock, [&] { return ready_pos_ == position_ || error_; });
      if (error_) std::rethrow_exception(error_);
      std::copy(ready_.begin(), ready_.begin() + std::ptrdiff_t(n), out);
      have = true;
    }
  }
  if (!have) fill(position_, out);
  position_ += opt_.batch_size;
  if (worker_.joinable()) {
    std::lock_guard<std::mutex> lock(mu_);
    want_pos_ = position_;
    cv_.notify_all();
  }
}

json SequenceLoader::state() const {
  return json{{"position", position_}, {"unique_sequences", unique_}, {"seed", opt_.seed},
              {"batch_size", opt_.batch_size}};
}

void SequenceLoader::restore(const json& st) {
  auto count = [&](const char* key) {
    if (!st.is_object() || !st.contains(key)) return false;
    const json& v = st[key];
    return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  };
  MT_INPUT(count("position") && count("unique_sequences") && count("seed"),
           "loader state: expected {position, unique_sequences, seed} as integers >= 0, got ", st.dump());
  MT_INPUT(st["unique_sequences"].get<int64_t>() == unique_ && st["seed"].get<uint64_t>() == opt_.seed,
           "loader state: the checkpoint's unique set (", st["unique_sequences"].get<int64_t>(), " sequences, seed ",
           st["seed"].get<uint64_t>(), ") differs from this run's (", unique_, ", seed ", opt_.seed, ")");
  const int64_t pos = st["position"].get<int64_t>();
  std::lock_guard<std::mutex> lock(mu_);
  position_ = pos;
  want_pos_ = worker_.joinable() ? pos : -1;
  cv_.notify_all();
}

void SequenceLoader::start_prefetch() {
  ready_.resize(size_t(local_batch()) * size_t(opt_.seq_len + 1));
  want_pos_ = position_;
  worker_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return quit_ || (want_pos_ >= 0 && want_pos_ != ready_pos_ && !error_); });
      if (quit_) return;
      int64_t pos = want_pos_;
      ready_pos_ = -1;
      lock.unlock();
      std::exception_ptr err;
      try {
        fill(pos, ready_.data());
      } catch (...) {
        err = std::current_exception();
      }
      lock.lock();
      if (err) {
        error_ = err;
      } else if (want_pos_ == pos) {
        ready_pos_ = pos;
      }
      cv_.notify_all();
    }
  });
}

void SequenceLoader::stop_prefetch() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
    cv_.notify_all();
  }
  worker_.join();
}

}  // namespace mt::data
