// Why: see megatron_writer.h. The .idx layout (little-endian): "MMIDIDX\0\0", u64 version 1, u8 dtype
// code, u64 sequence count n, u64 document count n + 1, int32[n] sequence lengths (tokens), int64[n]
// sequence pointers (byte offsets into .bin), int64[n + 1] document indices 0, 1, ..., n (document i
// is sequence i).
#include "data/megatron_writer.h"

#include <algorithm>
#include <limits>

#include "engine/core/check.h"

namespace mt::data {

MegatronWriter::MegatronWriter(std::string prefix, int vocab_size)
    : prefix_(std::move(prefix)),
      width_(vocab_size <= 65535 ? 2 : 4),
      bin_(prefix_ + ".bin"),
      lengths_(prefix_ + ".lengths") {}

void MegatronWriter::append(const int32_t* t, size_t n) {
  stage_.resize(n * size_t(width_));
  if (width_ == 2) {
    auto* o = reinterpret_cast<uint16_t*>(stage_.data());
    for (size_t i = 0; i < n; ++i) o[i] = uint16_t(t[i]);
  } else {
    std::memcpy(stage_.data(), t, n * 4);
  }
  bin_.write(stage_.data(), stage_.size());
  open_tokens_ += int64_t(n);
}

void MegatronWriter::end_document() {
  if (open_tokens_ == 0) return;
  MT_INPUT(open_tokens_ <= std::numeric_limits<int32_t>::max(), prefix_, ".idx: a document of ", open_tokens_,
           " tokens (Megatron-LM records a sequence length as int32; split the input into smaller documents)");
  const int32_t len = int32_t(open_tokens_);
  lengths_.write(&len, sizeof len);
  open_tokens_ = 0;
  documents_ += 1;
}

int64_t MegatronWriter::commit() {
  end_document();
  const uint64_t n = uint64_t(documents_);
  OutFile idx(prefix_ + ".idx");
  idx.write("MMIDIDX\0\0", 9);
  const uint64_t version = 1, docs = n + 1;
  const uint8_t code = uint8_t(dtype_code());
  idx.write(&version, 8);
  idx.write(&code, 1);
  idx.write(&n, 8);
  idx.write(&docs, 8);
  // The lengths, read back from their temporary file in blocks; then the pointers from them.
  constexpr int64_t kBlock = 1 << 20;
  std::vector<int32_t> lens;
  for (int pass = 0; pass < 2; ++pass) {
    int64_t pointer = 0;
    std::vector<int64_t> ptrs;
    for (int64_t b = 0; b < documents_; b += kBlock) {
      lens.resize(size_t(std::min(kBlock, documents_ - b)));
      lengths_.pread_at(b * 4, lens.data(), lens.size() * 4);
      if (pass == 0) {
        idx.write(lens.data(), lens.size() * 4);
        continue;
      }
      ptrs.resize(lens.size());
      for (size_t i = 0; i < lens.size(); ++i) {
        ptrs[i] = pointer;
        pointer += int64_t(lens[i]) * width_;
      }
      idx.write(ptrs.data(), ptrs.size() * 8);
    }
  }
  for (uint64_t d = 0; d <= n; ++d) {
    const int64_t v = int64_t(d);
    idx.write(&v, 8);
  }
  bin_.commit();
  idx.commit();
  return documents_;
}

}  // namespace mt::data
