// Why: see build.h. The stream of tokens is written into train part files as it comes; only at the
// end, when the total is known, is the val cut placed, the tokens after it copied into val shards
// and the last train part truncated. So the corpus is never held in memory, and only the val split
// (a small tail) is written twice.
#include "data/build.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>

#include "data/shards.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "engine/core/check.h"
#include "engine/core/json.h"

namespace fs = std::filesystem;

namespace mt::data {
namespace {

constexpr size_t kChunk = size_t(4) << 20;  // text bytes per read

// ---- input: plain or gzip text, files or stdin ----------------------------------------------------

class TextSource {
 public:
  explicit TextSource(std::vector<std::string> inputs) : inputs_(std::move(inputs)) {
    for (const std::string& in : inputs_) {
      struct stat st;
      if (in == "-" || ::stat(in.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        total_ = -1;
        break;
      }
      total_ += int64_t(st.st_size);
    }
  }
  ~TextSource() { close_input(); }
  TextSource(const TextSource&) = delete;
  TextSource& operator=(const TextSource&) = delete;

  // Appends the next piece of text (at most kChunk + 1 bytes) to *buf; false when all inputs are done.
  bool read(std::string* buf) {
    while (true) {
      if (fd_ < 0 && !open_next()) return false;
      const size_t old = buf->size();
      if (newline_due_) buf->push_back('\n');
      newline_due_ = false;
      const size_t base = buf->size();
      buf->resize(base + kChunk);
      size_t got = gzip_ ? inflate_some(buf->data() + base, kChunk) : read_some(buf->data() + base, kChunk);
      buf->resize(base + got);
      if (got > 0) {
        last_byte_ = buf->back();
        any_text_ = true;
      } else {
        close_input();
      }
      if (buf->size() > old) return true;
    }
  }
  int64_t bytes_read() const { return bytes_read_; }
  int64_t bytes_total() const { return total_; }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  bool open_next() {
    if (next_ >= inputs_.size()) return false;
    name_ = inputs_[next_++];
    if (name_ == "-") {
      fd_ = 0;
      name_ = "stdin";
    } else {
      fd_ = ::open(name_.c_str(), O_RDONLY | O_CLOEXEC);
      MT_INPUT(fd_ >= 0, name_, ": cannot open (", std::strerror(errno), ")");
    }
    newline_due_ = any_text_ && last_byte_ != '\n';
    in_pos_ = in_len_ = 0;
    gz_end_ = false;
    fill_input();
    gzip_ = in_len_ >= 2 && uint8_t(in_[0]) == 0x1f && uint8_t(in_[1]) == 0x8b;
    if (gzip_) {
      zs_ = z_stream{};
      MT_CHECK(inflateInit2(&zs_, 15 + 16) == Z_OK, "zlib inflateInit2 failed");
      z_open_ = true;
    }
    return true;
  }

  void close_input() {
    if (z_open_) inflateEnd(&zs_);
    z_open_ = false;
    if (fd_ > 0) ::close(fd_);
    fd_ = -1;
  }

  // Makes input bytes available; false at the end of the file.
  bool fill_input() {
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

  size_t read_some(char* out, size_t cap) {
    size_t got = 0;
    while (got < cap && fill_input()) {
      size_t m = std::min(cap - got, in_len_ - in_pos_);
      std::memcpy(out + got, in_.data() + in_pos_, m);
      in_pos_ += m;
      got += m;
    }
    return got;
  }

  // Inflates into out; concatenated gzip members are read one after another (as gunzip does).
  size_t inflate_some(char* out, size_t cap) {
    size_t got = 0;
    while (got < cap && !gz_end_) {
      const bool more = fill_input();
      zs_.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
      zs_.avail_in = uInt(in_len_ - in_pos_);
      zs_.next_out = reinterpret_cast<Bytef*>(out + got);
      zs_.avail_out = uInt(cap - got);
      int rc = inflate(&zs_, Z_NO_FLUSH);
      const size_t produced = (cap - got) - zs_.avail_out;
      got += produced;
      in_pos_ = in_len_ - zs_.avail_in;
      if (rc == Z_STREAM_END) {
        if (!fill_input()) {
          gz_end_ = true;
        } else if (uint8_t(in_[in_pos_]) == 0x1f) {
          inflateReset(&zs_);
        } else {
          warnings_.push_back(name_ + ": bytes after the end of the gzip data were ignored");
          gz_end_ = true;
        }
      } else if (rc == Z_BUF_ERROR || (rc == Z_OK && produced == 0)) {
        MT_INPUT(more, name_, ": truncated gzip data (the file ends inside the compressed stream)");
      } else if (rc != Z_OK) {
        throw InputError(str(name_, ": corrupt gzip data (", zs_.msg ? zs_.msg : "inflate failed", ")"));
      }
    }
    return got;
  }

  std::vector<std::string> inputs_;
  size_t next_ = 0;
  std::string name_;
  int fd_ = -1;
  bool gzip_ = false, z_open_ = false, gz_end_ = false;
  z_stream zs_{};
  std::vector<char> in_ = std::vector<char>(size_t(1) << 20);
  size_t in_pos_ = 0, in_len_ = 0;
  int64_t bytes_read_ = 0, total_ = 0;
  bool newline_due_ = false, any_text_ = false;
  char last_byte_ = '\n';
  std::vector<std::string> warnings_;
};

// Runs a TextSource on a thread of its own, a few chunks ahead, so that decompression overlaps with
// tokenizing and writing. An exception of the reader is rethrown by next().
class Prefetcher {
 public:
  explicit Prefetcher(TextSource* src) : src_(src), thread_([this] { run(); }) {}
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Appends the next chunk to *buf; false at the end of the input.
  bool next(std::string* buf) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !ready_.empty() || done_; });
    if (ready_.empty()) {
      if (error_) std::rethrow_exception(error_);
      return false;
    }
    std::string chunk = std::move(ready_.front());
    ready_.pop_front();
    input_bytes_ = chunk_input_.front();
    chunk_input_.pop_front();
    lock.unlock();
    cv_.notify_all();
    buf->append(chunk);
    return true;
  }
  int64_t input_bytes() const { return input_bytes_; }  // input consumed up to the last chunk

 private:
  static constexpr size_t kAhead = 3;
  void run() {
    try {
      while (true) {
        std::string chunk;
        if (!src_->read(&chunk)) break;
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return ready_.size() < kAhead || stop_; });
        if (stop_) return;
        ready_.push_back(std::move(chunk));
        chunk_input_.push_back(src_->bytes_read());
        lock.unlock();
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
  }

  TextSource* src_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> ready_;
  std::deque<int64_t> chunk_input_;
  int64_t input_bytes_ = 0;
  bool stop_ = false, done_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: starts after the members it uses
};

// ---- UTF-8 check across chunk boundaries ----------------------------------------------------------

class Utf8Check {
 public:
  void feed(const char* p, size_t n) {
    const auto* u = reinterpret_cast<const uint8_t*>(p);
    size_t i = 0;
    if (carry_len_ > 0) {  // complete the code point split by the previous chunk
      while (i < n && carry_len_ < carry_.size() && !utf8::is_lead(u[i])) carry_[carry_len_++] = u[i++];
      count(carry_.data(), carry_len_);
      offset_ += int64_t(carry_len_);
      carry_len_ = 0;
    }
    size_t tail = utf8::incomplete_tail(u + i, n - i);
    count(u + i, n - i - tail);
    offset_ += int64_t(n - i - tail);
    std::memcpy(carry_.data(), u + n - tail, tail);
    carry_len_ = tail;
  }
  void finish() {
    count(carry_.data(), carry_len_);
    carry_len_ = 0;
  }
  int64_t invalid() const { return invalid_; }
  int64_t first_invalid() const { return first_; }

 private:
  void count(const uint8_t* p, size_t n) {
    size_t first = 0;
    int64_t bad = utf8::count_invalid(p, n, &first);
    if (bad > 0 && invalid_ == 0) first_ = offset_ + int64_t(first);
    invalid_ += bad;
  }
  std::array<uint8_t, 4> carry_{};
  size_t carry_len_ = 0;
  int64_t offset_ = 0, invalid_ = 0, first_ = -1;
};

// ---- what each token id stands for --------------------------------------------------------------

struct TokenTables {
  std::vector<uint32_t> bytes, chars;  // per id: bytes and characters (lead bytes) it decodes to
  std::vector<uint8_t> ends_line;      // per id: its bytes end with '\n'
  bool byte_level;                     // id = byte: counted arithmetically (the fast path)
  explicit TokenTables(const Tokenizer& tok) : byte_level(tok.kind() == TokenizerKind::Byte) {
    size_t v = size_t(tok.vocab_size());
    bytes.resize(v), chars.resize(v), ends_line.resize(v);
    for (size_t id = 0; id < v; ++id) {
      std::string_view b = tok.token_bytes(int32_t(id));
      bytes[id] = uint32_t(b.size());
      chars[id] = uint32_t(utf8::count_chars(reinterpret_cast<const uint8_t*>(b.data()), b.size()));
      ends_line[id] = !b.empty() && b.back() == '\n';
    }
  }
};

// ---- output files -------------------------------------------------------------------------------

// A file written under "<path>.tmp.<pid>" and renamed onto <path> by commit(); removed if never
// committed. Writes are buffered; pread/pwrite/truncate work on what was written so far.
class OutFile {
 public:
  explicit OutFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())) {
    fd_ = ::open(tmp_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(str(tmp_, ": cannot create (", std::strerror(errno), ")"));
  }
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  void write(const void* data, size_t n) {
    if (buf_.size() + n > kBuffer) flush();
    if (n >= kBuffer) {
      write_all(data, n);
    } else {
      buf_.insert(buf_.end(), static_cast<const char*>(data), static_cast<const char*>(data) + n);
    }
  }
  // Closes the descriptor of a file that is complete for now (any later call reopens it), so that a
  // build of many shards does not hold one descriptor per shard.
  void park() {
    flush();
    ::close(fd_);
    fd_ = -1;
  }
  void pwrite_at(int64_t offset, const void* data, size_t n) {
    flush();
    if (::pwrite(fd_, data, n, offset) != ssize_t(n)) fail("write");
  }
  void pread_at(int64_t offset, void* data, size_t n) {
    flush();
    if (::pread(fd_, data, n, offset) != ssize_t(n)) fail("read back");
  }
  void truncate(int64_t size) {
    flush();
    if (::ftruncate(fd_, size) != 0) fail("truncate");
  }
  void commit() {
    flush();
    if (::fsync(fd_) != 0) fail("fsync");
    ::close(fd_);
    fd_ = -1;
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw Error(str("cannot rename ", tmp_, " to ", path_, " (", std::strerror(errno), ")"));
    committed_ = true;
  }
  void set_path(std::string path) { path_ = std::move(path); }

 private:
  static constexpr size_t kBuffer = size_t(8) << 20;
  [[noreturn]] void fail(const char* what) {
    throw Error(str(tmp_, ": ", what, " failed (", std::strerror(errno), "; disk full?)"));
  }
  void write_all(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("write");
      p += w;
      n -= size_t(w);
    }
  }
  // Writes the buffer out (reopening a parked file first, positioned at its end).
  void flush() {
    if (fd_ < 0) {
      fd_ = ::open(tmp_.c_str(), O_RDWR | O_CLOEXEC);
      if (fd_ < 0 || ::lseek(fd_, 0, SEEK_END) < 0) fail("reopen");
    }
    write_all(buf_.data(), buf_.size());
    buf_.clear();
  }
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
  std::vector<char> buf_;
};

std::string read_whole_file(const std::string& path) {
  std::string s;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MT_INPUT(fd >= 0, path, ": cannot open (", std::strerror(errno), ")");
  char buf[1 << 16];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, size_t(n));
  ::close(fd);
  MT_INPUT(n == 0, path, ": read failed");
  return s;
}

void write_file_atomic(const std::string& path, const std::string& text) {
  OutFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

std::string shard_name(const char* split, size_t i) {
  char name[32];
  std::snprintf(name, sizeof name, "%s_%06zu.bin", split, i);
  return name;
}

// A token stream cut into native shards of at most `shard_tokens` tokens; each shard counts the
// bytes and characters its tokens decode to.
class ShardStream {
 public:
  struct Part {
    std::unique_ptr<OutFile> file;
    int64_t tokens = 0, bytes = 0, chars = 0;
  };

  ShardStream(std::string dir, const char* split, int width, int64_t shard_tokens, const TokenTables& tables)
      : dir_(std::move(dir)), split_(split), width_(width), shard_tokens_(shard_tokens), tables_(tables) {}

  void append(const int32_t* t, size_t n) {
    while (n > 0) {
      if (parts_.empty() || parts_.back().tokens == shard_tokens_) start_part();
      Part& p = parts_.back();
      size_t m = size_t(std::min<int64_t>(int64_t(n), shard_tokens_ - p.tokens));
      stage_.resize(m * size_t(width_));
      int64_t bytes = 0, chars = 0;
      if (width_ == 2) {
        auto* o = reinterpret_cast<uint16_t*>(stage_.data());
        for (size_t i = 0; i < m; ++i) o[i] = uint16_t(t[i]);
      } else {
        auto* o = reinterpret_cast<uint32_t*>(stage_.data());
        for (size_t i = 0; i < m; ++i) o[i] = uint32_t(t[i]);
      }
      if (tables_.byte_level) {
        bytes = int64_t(m);
        for (size_t i = 0; i < m; ++i) chars += (t[i] & 0xC0) != 0x80;
      } else {
        for (size_t i = 0; i < m; ++i) {
          bytes += tables_.bytes[size_t(t[i])];
          chars += tables_.chars[size_t(t[i])];
        }
      }
      p.file->write(stage_.data(), stage_.size());
      p.tokens += int64_t(m), p.bytes += bytes, p.chars += chars;
      total_ += int64_t(m);
      t += m, n -= m;
    }
  }

  int64_t total() const { return total_; }

  // Tokens [begin, begin + n) of the stream.
  void read(int64_t begin, int64_t n, std::vector<int32_t>* out) {
    out->resize(size_t(n));
    std::vector<uint8_t> raw;
    int64_t done = 0;
    while (done < n) {
      int64_t pos = begin + done;
      size_t pi = size_t(pos / shard_tokens_);
      int64_t in_part = pos - int64_t(pi) * shard_tokens_;
      int64_t m = std::min(n - done, parts_[pi].tokens - in_part);
      raw.resize(size_t(m * width_));
      parts_[pi].file->pread_at(kNativeHeaderBytes + in_part * width_, raw.data(), raw.size());
      for (int64_t i = 0; i < m; ++i) {
        uint32_t v = 0;
        std::memcpy(&v, raw.data() + i * width_, size_t(width_));
        (*out)[size_t(done + i)] = int32_t(v);
      }
      done += m;
    }
  }

  // Drops the tokens from `cut` on (they were copied elsewhere); shards past it are deleted.
  void truncate(int64_t cut) {
    std::vector<int32_t> tail;
    while (total_ > cut) {
      Part& p = parts_.back();
      int64_t first = total_ - p.tokens;
      int64_t keep = std::max<int64_t>(cut - first, 0);
      if (keep == 0) {
        parts_.pop_back();
      } else {
        read(cut, p.tokens - keep, &tail);
        for (int32_t t : tail) {
          p.bytes -= tables_.bytes[size_t(t)];
          p.chars -= tables_.chars[size_t(t)];
        }
        p.file->truncate(kNativeHeaderBytes + keep * width_);
        p.tokens = keep;
      }
      total_ = first + keep;
    }
  }

  // Writes the headers and renames the shards into place; returns their index.json entries.
  json commit(SplitSummary* summary) {
    json entries = json::array();
    for (size_t i = 0; i < parts_.size(); ++i) {
      Part& p = parts_[i];
      std::array<int32_t, 256> header{};
      header[0] = width_ == 2 ? kMagicV1 : kMagicV7;
      header[1] = width_ == 2 ? 1 : 7;
      header[2] = int32_t(p.tokens);
      p.file->pwrite_at(0, header.data(), sizeof header);
      std::string name = shard_name(split_, i);
      p.file->set_path((fs::path(dir_) / name).string());
      p.file->commit();
      entries.push_back({{"file", name}, {"tokens", p.tokens}, {"bytes", p.bytes}, {"characters", p.chars}});
      summary->shards += 1;
      summary->tokens += p.tokens, summary->text_bytes += p.bytes, summary->characters += p.chars;
    }
    return entries;
  }

 private:
  void start_part() {
    if (!parts_.empty()) parts_.back().file->park();
    std::string tmp_name = str(".", split_, "_part_", parts_.size(), ".bin");
    Part p;
    p.file = std::make_unique<OutFile>((fs::path(dir_) / tmp_name).string());
    std::array<char, kNativeHeaderBytes> zeros{};  // the header is written by commit()
    p.file->write(zeros.data(), zeros.size());
    parts_.push_back(std::move(p));
  }

  std::string dir_;
  const char* split_;
  int width_;
  int64_t shard_tokens_;
  const TokenTables& tables_;
  std::vector<Part> parts_;
  std::vector<char> stage_;
  int64_t total_ = 0;
};

// The val split starts at a line start (a position after a token that ends with '\n'): the last one
// at or before `target` but not before `target - slack` (so val gets at most `slack` tokens more than
// asked), else the first one after `target`; -1 if there is none.
int64_t line_cut(ShardStream& s, const TokenTables& tables, int64_t target, int64_t slack) {
  constexpr int64_t kBlock = 1 << 16;
  std::vector<int32_t> block;
  const int64_t lowest = std::max<int64_t>(target - slack, 1);
  for (int64_t end = target; end >= lowest; end -= kBlock) {  // positions c in [begin, end]: token c-1
    int64_t begin = std::max<int64_t>(end - kBlock + 1, lowest);
    s.read(begin - 1, end - begin + 1, &block);
    for (int64_t c = end; c >= begin; --c)
      if (tables.ends_line[size_t(block[size_t(c - begin)])]) return c;
  }
  for (int64_t begin = target + 1; begin < s.total(); begin += kBlock) {
    int64_t end = std::min(begin + kBlock, s.total());
    s.read(begin - 1, end - begin, &block);
    for (int64_t c = begin; c < end; ++c)
      if (tables.ends_line[size_t(block[size_t(c - begin)])]) return c;
  }
  return -1;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Removes shard files of an earlier build into the same folder that the new index does not list.
void remove_stale_shards(const std::string& dir, const char* split, size_t keep) {
  for (size_t i = keep;; ++i) {
    fs::path p = fs::path(dir) / shard_name(split, i);
    if (!fs::exists(p)) break;
    fs::remove(p);
  }
}

}  // namespace

BuildSummary build_dataset(const BuildOptions& o, const std::function<void(const BuildProgress&)>& on_progress) {
  const auto t0 = std::chrono::steady_clock::now();
  MT_INPUT(!o.inputs.empty(), "data build: no --input");
  MT_INPUT(!o.out_dir.empty(), "data build: no --out folder");
  MT_INPUT(o.shard_tokens >= 2 && o.shard_tokens <= std::numeric_limits<int32_t>::max(),
           "--shard-tokens: must be in [2, 2147483647] (llm.c headers count tokens in an int32)");
  MT_INPUT(o.val_fraction >= 0 && o.val_fraction < 1, "--val-fraction: must be in [0, 1)");
  MT_INPUT(!o.val_tokens || *o.val_tokens >= 0, "--val-tokens: must be >= 0");
  for (const std::string& in : o.inputs)
    MT_INPUT(in == "-" || fs::exists(in), in, ": no such input file");

  Tokenizer tok = o.tokenizer == "byte" ? Tokenizer::byte_level() : Tokenizer::from_file(o.tokenizer);
  const TokenTables tables(tok);
  const int width = tok.vocab_size() > 65536 ? 4 : 2;
  fs::create_directories(o.out_dir);

  BuildSummary sum;
  sum.vocab_size = tok.vocab_size();
  ShardStream train(o.out_dir, "train", width, o.shard_tokens, tables);
  TextSource src(o.inputs);
  Utf8Check utf8_check;
  auto reader = std::make_unique<Prefetcher>(&src);
  std::string pending;
  std::vector<int32_t> ids;
  BuildProgress prog;
  prog.input_total = src.bytes_total();
  while (true) {
    const size_t old = pending.size();
    if (!reader->next(&pending)) break;
    utf8_check.feed(pending.data() + old, pending.size() - old);
    prog.text_bytes += int64_t(pending.size() - old);
    ids.clear();
    size_t used = tok.encode_prefix(pending, &ids);
    pending.erase(0, used);
    train.append(ids.data(), ids.size());
    if (on_progress) {
      prog.input_bytes = reader->input_bytes();
      prog.tokens = train.total();
      prog.seconds = seconds_since(t0);
      on_progress(prog);
    }
  }
  ids.clear();
  tok.encode(pending, &ids);
  train.append(ids.data(), ids.size());
  utf8_check.finish();
  reader.reset();  // the reader thread is done: src may be read from here
  sum.input_bytes = src.bytes_read();
  sum.warnings = src.warnings();
  if (utf8_check.invalid() > 0)
    sum.warnings.push_back(str("the text has ", utf8_check.invalid(), " invalid UTF-8 sequence",
                               utf8_check.invalid() > 1 ? "s" : "", " (the first at byte ", utf8_check.first_invalid(),
                               "); characters count UTF-8 lead bytes"));

  // The val split: the last tokens, from the start of a line.
  const int64_t total = train.total();
  MT_INPUT(total >= 2, "data build: the input has ", total, " token", total == 1 ? "" : "s", " (need at least 2)");
  int64_t want_val = o.val_tokens ? *o.val_tokens : std::llround(o.val_fraction * double(total));
  MT_INPUT(want_val < total, "--val-tokens ", want_val, " leaves no training tokens (the text has ", total, " tokens)");
  ShardStream val(o.out_dir, "val", width, o.shard_tokens, tables);
  if (want_val > 0) {
    int64_t cut = line_cut(train, tables, total - want_val, want_val);
    if (cut <= 0 || cut >= total) {
      sum.warnings.push_back("no line start to begin the val split at: it begins mid-line");
      cut = total - want_val;
    }
    constexpr int64_t kBlock = 1 << 20;
    for (int64_t b = cut; b < total; b += kBlock) {
      train.read(b, std::min(kBlock, total - b), &ids);
      val.append(ids.data(), ids.size());
    }
    train.truncate(cut);
  }

  json splits = json::object();
  splits["train"] = train.commit(&sum.train);
  splits["val"] = val.commit(&sum.val);
  json index = json::object();
  index["format"] = "moetrain";
  index["version"] = 1;
  if (tok.kind() == TokenizerKind::Byte) {
    index["tokenizer"] = {{"type", "byte"}};
  } else {
    const fs::path dest = fs::path(o.out_dir) / "tokenizer.json";
    if (!fs::exists(dest) || !fs::equivalent(dest, o.tokenizer)) write_file_atomic(dest.string(), read_whole_file(o.tokenizer));
    index["tokenizer"] = {{"type", "bpe"}, {"file", "tokenizer.json"}};
  }
  index["vocab_size"] = tok.vocab_size();
  index["splits"] = splits;
  write_file_atomic((fs::path(o.out_dir) / "index.json").string(), index.dump(2) + "\n");
  remove_stale_shards(o.out_dir, "train", size_t(sum.train.shards));
  remove_stale_shards(o.out_dir, "val", size_t(sum.val.shards));
  sum.seconds = seconds_since(t0);
  return sum;
}

}  // namespace mt::data

