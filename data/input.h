// Why: corpora come as many files (named one by one, by glob or by folder), plain or compressed
// (gzip, zstd), as plain text or as JSON Lines. This is where an --input list becomes a sorted list
// of files and each file a stream of bytes, decompressed according to its first bytes (not its name).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mt::data {

// Files, globs and folders (searched recursively; hidden files skipped) become a list of files, each
// spec's files sorted by path, specs in the order given; "-" (stdin) stays. A spec that matches
// nothing is an InputError naming it.
std::vector<std::string> expand_inputs(const std::vector<std::string>& specs);

// True for names that say JSON Lines: .jsonl or .json, optionally followed by .gz, .zst or .zstd.
bool is_jsonl_name(const std::string& path);

enum class Compression { None, Gzip, Zstd };
const char* to_string(Compression c);

// One input file (or "-" for stdin) as a stream of decompressed bytes. Gzip (concatenated members
// too) and zstd (concatenated frames too) are recognised by their magic bytes. Truncated or corrupt
// data is an InputError naming the file.
class ByteReader {
 public:
  explicit ByteReader(const std::string& path);
  ~ByteReader();
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  // Up to `cap` bytes into `out`; 0 at the end of the data.
  size_t read(char* out, size_t cap);
  const std::string& name() const { return name_; }
  Compression compression() const { return compression_; }
  int64_t bytes_read() const { return bytes_read_; }  // from the file (compressed)
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  bool fill_input();
  size_t read_plain(char* out, size_t cap);
  size_t read_gzip(char* out, size_t cap);
  size_t read_zstd(char* out, size_t cap);

  std::string name_;
  int fd_ = -1;
  Compression compression_ = Compression::None;
  struct Codec;
  std::unique_ptr<Codec> codec_;
  bool ended_ = false;
  std::vector<char> in_ = std::vector<char>(size_t(1) << 20);
  size_t in_pos_ = 0, in_len_ = 0;
  int64_t bytes_read_ = 0;
  std::vector<std::string> warnings_;
};

}  // namespace mt::data
