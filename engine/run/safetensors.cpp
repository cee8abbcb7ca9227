// Why: see safetensors.h.
#include "engine/run/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "engine/core/check.h"
#include "engine/run/config.h"
#include "engine/core/io.h"

namespace mt::safetensors {

DType parse_dtype(const std::string& s, const std::string& where) {
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::I32, DType::I64, DType::U8})
    if (s == dtype_name(t)) return t;
  throw InputError(where + ": unsupported dtype \"" + s + "\"");
}

size_t File::Entry::numel() const {
  size_t n = 1;
  for (auto d : shape) n *= size_t(d);
  return n;
}

void write(const std::string& path, const std::vector<TensorRef>& tensors,
           const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) {
    json md = json::object();
    for (auto& [k, v] : metadata) md[k] = v;
    header["__metadata__"] = md;
  }
  size_t offset = 0;
  for (const auto& t : tensors) {
    size_t n = 1;
    for (auto d : t.shape) n *= size_t(d);
    size_t bytes = n * dtype_size(t.dtype);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Pad the header with spaces to a multiple of 8 bytes (aligned data, as the reference writer does).
  text.append((8 - (text.size() + 8) % 8) % 8, ' ');
  AtomicFile out(path);
  uint64_t len = text.size();
  out.write(&len, 8);
  out.write(text.data(), text.size());
  for (const auto& t : tensors) {
    size_t n = 1;
    for (auto d : t.shape) n *= size_t(d);
    out.write(t.data, n * dtype_size(t.dtype));
  }
  out.commit();
}

File::File(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  MT_INPUT(fd >= 0, path, ": cannot open (", std::filesystem::exists(path) ? "not readable" : "no such file", ")");
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    map_ = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    MT_CHECK(map_ != MAP_FAILED, path, ": mmap failed");
  } else {
    ::close(fd);
  }
  const char* base = static_cast<const char*>(map_);
  MT_INPUT(size_ >= 8, path, ": not a safetensors file (", size_, " bytes)");
  uint64_t len;
  std::memcpy(&len, base, 8);
  MT_INPUT(len <= size_ - 8, path, ": corrupt safetensors header (header length ", len, " exceeds the file)");
  json header = parse_json(std::string(base + 8, len), path + ": safetensors header");
  MT_INPUT(header.is_object(), path, ": corrupt safetensors header");
  data_ = base + 8 + len;
  const size_t data_size = size_ - 8 - len;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      MT_INPUT(it.value().is_object(), path, ": __metadata__ must be an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m)
        if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
      continue;
    }
    const json& e = it.value();
    std::string where = path + ": tensor " + it.key();
    MT_INPUT(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"), where,
             ": malformed header entry");
    Entry en;
    MT_INPUT(e["dtype"].is_string(), where, ": dtype must be a string");
    en.dtype = parse_dtype(e["dtype"].get<std::string>(), where);
    MT_INPUT(e["shape"].is_array() && e["shape"].size() <= 8, where, ": shape must be an array of at most 8 sizes");
    size_t numel = 1;
    for (auto& d : e["shape"]) {
      MT_INPUT(d.is_number_unsigned() && d.get<uint64_t>() <= data_size, where, ": bad shape ", e["shape"].dump());
      const auto n = d.get<uint64_t>();
      MT_INPUT(n == 0 || numel <= data_size / n, where, ": shape ", e["shape"].dump(), " is larger than the file");
      numel *= n;
      en.shape.push_back(int64_t(n));
    }
    const json& off = e["data_offsets"];
    MT_INPUT(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), where,
             ": data_offsets must be two unsigned integers");
    en.begin = off[0].get<size_t>();
    en.end = off[1].get<size_t>();
    MT_INPUT(en.begin <= en.end && en.end <= data_size, where, ": data [", en.begin, ", ", en.end,
             ") lies outside the file's ", data_size, " data bytes (truncated?)");
    MT_INPUT(en.end - en.begin == numel * dtype_size(en.dtype), where, ": byte size does not match its shape");
    entries_[it.key()] = en;
  }
}

File::~File() {
  if (map_ && map_ != MAP_FAILED) munmap(map_, size_);
}

const File::Entry& File::entry(const std::string& name) const {
  auto it = entries_.find(name);
  MT_INPUT(it != entries_.end(), path_, ": no tensor named ", name);
  return it->second;
}

const void* File::data(const std::string& name) const { return data_ + entry(name).begin; }

}  // namespace mt::safetensors
