// Why: `moetrain data build --out-format megatron` hands a corpus to Megatron-LM as it expects it: an
// indexed dataset PREFIX.bin / PREFIX.idx (the layout data/shards.h reads, one sequence per document,
// as Megatron's preprocess_data.py writes with one sentence per document). Tokens stream to the .bin
// and the per-document lengths to a temporary file, so memory stays small whatever the corpus size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/out_file.h"

namespace mt::data {

class MegatronWriter {
 public:
  // Tokens are uint16 (dtype code 8) for vocab_size <= 65535, else int32 (code 4).
  MegatronWriter(std::string prefix, int vocab_size);
  void append(const int32_t* tokens, size_t n);  // to the open document
  void end_document();                           // closes it (an empty document is not recorded)
  // Writes PREFIX.idx and renames both files into place; returns the number of documents.
  int64_t commit();
  int dtype_code() const { return width_ == 2 ? 8 : 4; }

 private:
  std::string prefix_;
  int width_;
  OutFile bin_, lengths_;
  std::vector<char> stage_;
  int64_t open_tokens_ = 0, documents_ = 0;
};

}  // namespace mt::data
