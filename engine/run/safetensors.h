// Why: the one tensor file format of moetrain (checkpoints, `init`, `grad`, `export`): safetensors, so
// that PyTorch / JAX users can open our weights and gradients directly. Layout: u64 little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
// {string: string}}, then the raw little-endian data. Files are written to a temporary name and
// renamed; a reader validates every offset against the file size (a truncated or corrupt file is an
// InputError naming it, never a crash).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/core/dtype.h"

namespace mt::safetensors {

struct TensorRef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // host memory, numel * dtype_size bytes
};

// Writes `path` atomically. metadata values are strings (the format's rule).
void write(const std::string& path, const std::vector<TensorRef>& tensors,
           const std::map<std::string, std::string>& metadata = {});

class File {
 public:
  struct Entry {
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    size_t begin = 0, end = 0;  // byte offsets into the data section
    size_t numel() const;
  };
  explicit File(const std::string& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  const Entry& entry(const std::string& name) const;  // InputError naming file and tensor if absent
  const void* data(const std::string& name) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  const char* data_ = nullptr;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

DType parse_dtype(const std::string& s, const std::string& where);

}  // namespace mt::safetensors
