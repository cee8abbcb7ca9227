// Why: see input.h.
#include "data/input.h"

#include <fcntl.h>
#include <glob.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "engine/core/check.h"

namespace fs = std::filesystem;

namespace mt::data {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool hidden(const fs::path& p) {
  const std::string n = p.filename().string();
  return !n.empty() && n[0] == '.';
}

}  // namespace

std::vector<std::string> expand_inputs(const std::vector<std::string>& specs) {
  std::vector<std::string> files;
  for (const std::string& spec : specs) {
    std::vector<std::string> found;
    std::error_code ec;
    if (spec == "-") {
      found.push_back(spec);
    } else if (fs::is_directory(spec, ec)) {
      for (auto it = fs::recursive_directory_iterator(spec, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        if (hidden(it->path())) {
          if (it->is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file()) found.push_back(it->path().string());
      }
      MT_INPUT(!ec, spec, ": cannot list the folder (", ec.message(), ")");
      MT_INPUT(!found.empty(), spec, ": a folder without files");
    } else if (fs::exists(spec, ec)) {
      found.push_back(spec);
    } else {
      glob_t g{};
      int rc = ::glob(spec.c_str(), 0, nullptr, &g);
      for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i)
        if (fs::is_regular_file(g.gl_pathv[i])) found.push_back(g.gl_pathv[i]);
      ::globfree(&g);
      MT_INPUT(!found.empty(), spec, ": no such input file (nor a folder, nor a glob that matches a file)");
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

bool is_jsonl_name(const std::string& path) {
  std::string n = path;
  for (const char* c : {".gz", ".zst", ".zstd"})
    if (ends_with(n, c)) n.resize(n.size() - std::strlen(c));
  return ends_with(n, ".jsonl") || ends_with(n, ".json");
}

const char* to_string(Compression c) {
  switch (c) {
    case Compression::None: return "plain";
    case Compression::Gzip: return "gzip";
    case Compression::Zstd: return "zstd";
  }
  return "?";
}

struct ByteReader::Codec {
  z_stream zs{};
  bool z_open = false;
  bool z_end = false;       // gzip: the last member is done
  ZSTD_DCtx* zd = nullptr;
  bool frame_open = false;  // zstd: inside a frame (the data must not end here)
  ~Codec() {
    if (z_open) inflateEnd(&zs);
    if (zd) ZSTD_freeDCtx(zd);
  }
};

ByteReader::ByteReader(const std::string& path) : name_(path), codec_(std::make_unique<Codec>()) {
  if (path == "-") {
    fd_ = 0;
    name_ = "stdin";
  } else {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    MT_INPUT(fd_ >= 0, path, ": cannot open (", std::strerror(errno), ")");
  }
  // The magic bytes: gzip 1f 8b, zstd 28 b5 2f fd. A short read of the first block is topped up.
  while (in_len_ < 4) {
    ssize_t n = ::read(fd_, in_.data() + in_len_, in_.size() - in_len_);
    if (n < 0 && errno == EINTR) continue;
    MT_INPUT(n >= 0, name_, ": read failed (", std::strerror(errno), ")");
    if (n == 0) break;
    in_len_ += size_t(n);
    bytes_read_ += n;
  }
  const auto* u = reinterpret_cast<const uint8_t*>(in_.data());
  if (in_len_ >= 2 && u[0] == 0x1f && u[1] == 0x8b) {
    compression_ = Compression::Gzip;
    MT_CHECK(inflateInit2(&codec_->zs, 15 + 16) == Z_OK, "zlib inflateInit2 failed");
    codec_->z_open = true;
  } else if (in_len_ >= 4 && u[0] == 0x28 && u[1] == 0xb5 && u[2] == 0x2f && u[3] == 0xfd) {
    compression_ = Compression::Zstd;
    codec_->zd = ZSTD_createDCtx();
    MT_CHECK(codec_->zd != nullptr, "ZSTD_createDCtx failed");
  }
}

ByteReader::~ByteReader() {
  if (fd_ > 0) ::close(fd_);
}

size_t ByteReader::read(char* out, size_t cap) {
  if (ended_ || cap == 0) return 0;
  size_t got = 0;
  switch (compression_) {
    case Compression::None: got = read_plain(out, cap); break;
    case Compression::Gzip: got = read_gzip(out, cap); break;
    case Compression::Zstd: got = read_zstd(out, cap); break;
  }
  if (got == 0) ended_ = true;
  return got;
}

// Makes input bytes available; false at the end of the file.
bool ByteReader::fill_input() {
  if (in_pos_ < in_len_) return true;
  ssize_t n;
  do {
    n = ::read(fd_, in_.data(), in_.size());
  } while (n < 0 && errno == EINTR);
  MT_INPUT(n >= 0, name_, ": read failed (", std::strerror(errno), ")");
  in_pos_ = 0;
  in_len_ = size_t(n);
  bytes_read_ += n;
  return n > 0;
}

size_t ByteReader::read_plain(char* out, size_t cap) {
  size_t got = 0;
  while (got < cap && fill_input()) {
    size_t m = std::min(cap - got, in_len_ - in_pos_);
    std::memcpy(out + got, in_.data() + in_pos_, m);
    in_pos_ += m;
    got += m;
  }
  return got;
}

// Concatenated gzip members are read one after another (as gunzip does).
size_t ByteReader::read_gzip(char* out, size_t cap) {
  z_stream& zs = codec_->zs;
  size_t got = 0;
  bool& end = codec_->z_end;
  while (got < cap && !end) {
    const bool more = fill_input();
    zs.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
    zs.avail_in = uInt(in_len_ - in_pos_);
    zs.next_out = reinterpret_cast<Bytef*>(out + got);
    zs.avail_out = uInt(cap - got);
    int rc = inflate(&zs, Z_NO_FLUSH);
    const size_t produced = (cap - got) - zs.avail_out;
    got += produced;
    in_pos_ = in_len_ - zs.avail_in;
    if (rc == Z_STREAM_END) {
      if (!fill_input()) {
        end = true;
      } else if (uint8_t(in_[in_pos_]) == 0x1f) {
        inflateReset(&zs);
      } else {
        warnings_.push_back(name_ + ": bytes after the end of the gzip data were ignored");
        end = true;
      }
    } else if (rc == Z_BUF_ERROR || (rc == Z_OK && produced == 0)) {
      MT_INPUT(more, name_, ": truncated gzip data (the file ends inside the compressed stream)");
    } else if (rc != Z_OK) {
      throw InputError(str(name_, ": corrupt gzip data (", zs.msg ? zs.msg : "inflate failed", ")"));
    }
  }
  return got;
}

// Concatenated zstd frames (and skippable frames) are read one after another (as zstd -d does).
size_t ByteReader::read_zstd(char* out, size_t cap) {
  ZSTD_outBuffer ob{out, cap, 0};
  while (ob.pos < ob.size) {
    const bool more = fill_input();
    if (!more && !codec_->frame_open) break;
    // At the end of the file the decoder may still hold output of the last frame: flush it.
    ZSTD_inBuffer ib{in_.data(), more ? in_len_ : 0, more ? in_pos_ : 0};
    const size_t before = ob.pos;
    size_t rc = ZSTD_decompressStream(codec_->zd, &ob, &ib);
    if (more) in_pos_ = ib.pos;
    MT_INPUT(!ZSTD_isError(rc), name_, ": corrupt zstd data (", ZSTD_getErrorName(rc), ")");
    codec_->frame_open = rc != 0;
    MT_INPUT(more || ob.pos > before, name_, ": truncated zstd data (the file ends inside a frame)");
  }
  return ob.pos;
}

}  // namespace mt::data
