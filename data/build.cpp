// Why: see build.h. The stream of tokens is written into train part files as it comes; only at the
// end, when the total is known, is the val cut placed, the tokens after it copied into val shards
// and the last train part truncated. So the corpus is never held in memory, and only the val split
// (a small tail) is written twice.
#include "data/build.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>

#include "data/input.h"
#include "data/megatron_writer.h"
#include "data/out_file.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "engine/core/check.h"
#include "engine/core/json.h"

namespace fs = std::filesystem;

namespace mt::data {
namespace {

constexpr size_t kRead = size_t(1) << 20;  // bytes per read

// ---- input: files cut into pieces that tokenize independently -----------------------------------

// A piece of one input file, handed to a worker. JSON Lines pieces are whole lines; plain text pieces
// end where the tokenizer's result cannot depend on the text that follows (find_cut).
struct Piece {
  std::string text;
  std::string file;
  bool jsonl = false;
  int64_t first_line = 1;                      // JSON Lines: the number of the piece's first line
  bool begins_doc = false, ends_doc = false;   // plain text: the piece begins / ends its file
};

// Where a piece of plain text may end so that it tokenizes the same alone as followed by the rest: after
// a '\n' that follows a visible ASCII character and precedes an ASCII letter or digit. There, both the
// GPT-2 and the Llama-3 pre-tokenizer regexes end one pre-token and start another (the newline is a
// pre-token of its own or ends a punctuation run, and neither looks further ahead). Byte-level tokens
// may end anywhere but inside a UTF-8 character. 0 when there is no such place.
size_t find_cut(const std::string& buf, bool jsonl, bool byte_level) {
  if (jsonl) {
    size_t nl = buf.rfind('\n');
    return nl == std::string::npos ? 0 : nl + 1;
  }
  const auto* u = reinterpret_cast<const uint8_t*>(buf.data());
  if (byte_level) return buf.size() - utf8::incomplete_tail(u, buf.size());
  for (size_t i = buf.size(); i-- > 2;) {
    if (u[i - 1] == '\n' && u[i - 2] > 0x20 && u[i - 2] < 0x7F && std::isalnum(u[i])) return i;
  }
  return 0;
}

class PieceReader {
 public:
  PieceReader(std::vector<std::string> files, InputFormat format, bool byte_level, size_t piece_bytes)
      : files_(std::move(files)), format_(format), byte_level_(byte_level), piece_bytes_(piece_bytes) {
    for (const std::string& f : files_) {
      struct stat st;
      if (f == "-" || ::stat(f.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        total_ = -1;
        break;
      }
      total_ += int64_t(st.st_size);
    }
  }

  // The next piece; false when every file is done.
  bool next(Piece* p) {
    while (true) {
      if (!in_) {
        if (next_ == files_.size()) return false;
        const std::string& f = files_[next_++];
        in_ = std::make_unique<ByteReader>(f);
        jsonl_ = format_ == InputFormat::Jsonl || (format_ == InputFormat::Auto && is_jsonl_name(f));
        jsonl_files_ += jsonl_;
        compressed_[size_t(in_->compression())] += 1;
        line_ = 1;
        at_start_ = true;
        buf_.clear();
      }
      // Read until there is a place to cut after piece_bytes_, or the file ends.
      bool eof = false;
      size_t cut = 0;
      for (size_t want = piece_bytes_; cut == 0 && !eof; want *= 2) {
        while (buf_.size() < want) {
          const size_t old = buf_.size(), step = std::min(kRead, want - old);
          buf_.resize(old + step);
          const size_t got = in_->read(buf_.data() + old, step);
          buf_.resize(old + got);
          if (got == 0) {
            eof = true;
            break;
          }
        }
        cut = eof ? buf_.size() : find_cut(buf_, jsonl_, byte_level_);
      }
      p->file = in_->name();
      p->jsonl = jsonl_;
      p->first_line = line_;
      p->begins_doc = at_start_;
      p->ends_doc = eof;
      p->text.assign(buf_, 0, cut);
      buf_.erase(0, cut);
      if (jsonl_) line_ += std::count(p->text.begin(), p->text.end(), '\n');
      at_start_ = false;
      if (eof) {
        done_bytes_ += in_->bytes_read();
        for (const std::string& w : in_->warnings()) warnings_.push_back(w);
        in_.reset();
        if (p->begins_doc && p->text.empty()) continue;  // an empty file
      }
      return true;
    }
  }

  int64_t bytes_read() const { return done_bytes_ + (in_ ? in_->bytes_read() : 0); }
  int64_t bytes_total() const { return total_; }
  int64_t jsonl_files() const { return jsonl_files_; }
  const std::array<int64_t, 3>& compressed() const { return compressed_; }  // files per Compression
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  std::vector<std::string> files_;
  InputFormat format_;
  bool byte_level_;
  size_t piece_bytes_;
  size_t next_ = 0;
  std::unique_ptr<ByteReader> in_;
  bool jsonl_ = false, at_start_ = true;
  std::string buf_;
  int64_t line_ = 1, done_bytes_ = 0, total_ = 0, jsonl_files_ = 0;
  std::array<int64_t, 3> compressed_{};
  std::vector<std::string> warnings_;
};

// ---- tokenizing a piece (on a worker) -----------------------------------------------------------

// A run of tokens of one document within a piece's result.
struct Part {
  size_t tokens = 0;
  bool begins_doc = false, ends_doc = false;
  bool ends_newline = false;  // the document's text ends with '\n' (when ends_doc)
};

struct PieceResult {
  std::vector<int32_t> ids;
  std::vector<Part> parts;
  int64_t text_bytes = 0, bad_lines = 0, empty_docs = 0, invalid_utf8 = 0;
  int64_t first_invalid = -1;  // offset into the piece's text bytes
  std::string first_bad;       // the first skipped line's message
};

struct EncodeSetup {
  std::string text_key;
  bool skip_bad_lines = false;
  int32_t eod = -1;            // the end-of-document token (-1: none)
};

class PieceEncoder {
 public:
  PieceEncoder(const Tokenizer& tok, const EncodeSetup& setup) : tok_(tok), setup_(setup) {}

  PieceResult encode(const Piece& p) {
    PieceResult r;
    if (!p.jsonl) {
      add_text(p.text, p.begins_doc, p.ends_doc, &r);
      return r;
    }
    int64_t line_no = p.first_line;
    for (size_t pos = 0; pos < p.text.size(); ++line_no) {
      size_t nl = p.text.find('\n', pos);
      if (nl == std::string::npos) nl = p.text.size();
      std::string_view line(p.text.data() + pos, nl - pos);
      pos = nl + 1;
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;  // blank lines
      const nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
      std::string why;
      const nlohmann::json* v = nullptr;
      if (j.is_discarded()) {
        why = "not valid JSON";
      } else if (!j.is_object()) {
        why = "not a JSON object";
      } else if (!j.contains(setup_.text_key)) {
        why = str("no field \"", setup_.text_key, "\" (--text-key names the field)");
      } else if (!(v = &j[setup_.text_key])->is_string()) {
        why = str("field \"", setup_.text_key, "\" is ", v->type_name(), ", not a string");
      }
      if (!why.empty()) {
        const std::string msg = str(p.file, ":", line_no, ": ", why);
        MT_INPUT(setup_.skip_bad_lines, msg, " (--skip-bad-lines skips such lines and counts them)");
        if (r.bad_lines++ == 0) r.first_bad = msg;
        continue;
      }
      const std::string& text = v->get_ref<const std::string&>();
      if (text.empty()) {
        r.empty_docs += 1;
        continue;
      }
      add_text(text, true, true, &r);
    }
    return r;
  }

 private:
  void add_text(const std::string& text, bool begins, bool ends, PieceResult* r) {
    const size_t before = r->ids.size();
    tok_.encode_ordinary(text, &r->ids);
    size_t first = 0;
    const int64_t bad = utf8::count_invalid(reinterpret_cast<const uint8_t*>(text.data()), text.size(), &first);
    if (bad > 0 && r->invalid_utf8 == 0) r->first_invalid = r->text_bytes + int64_t(first);
    r->invalid_utf8 += bad;
    r->text_bytes += int64_t(text.size());
    if (setup_.eod >= 0 && ends) r->ids.push_back(setup_.eod);
    r->parts.push_back({r->ids.size() - before, begins, ends, !text.empty() && text.back() == '\n'});
  }

  Tokenizer tok_;  // a copy per worker: shares the model, has its own cache
  const EncodeSetup& setup_;
};

// `n` threads tokenizing pieces; results come back as futures, which the caller takes in order.
class WorkerPool {
 public:
  WorkerPool(int n, const Tokenizer& tok, const EncodeSetup& setup) {
    for (int i = 0; i < n; ++i) encoders_.emplace_back(tok, setup);
    for (int i = 0; i < n; ++i) threads_.emplace_back([this, i] { run(i); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  std::future<PieceResult> submit(Piece&& p) {
    Task t{std::move(p), {}};
    std::future<PieceResult> f = t.done.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(t));
    }
    cv_.notify_one();
    return f;
  }

 private:
  struct Task {
    Piece piece;
    std::promise<PieceResult> done;
  };
  void run(int i) {
    while (true) {
      Task t;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        t = std::move(queue_.front());
        queue_.pop_front();
      }
      try {
        t.done.set_value(encoders_[size_t(i)].encode(t.piece));
      } catch (...) {
        t.done.set_exception(std::current_exception());
      }
    }
  }

  std::deque<PieceEncoder> encoders_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// ---- what each token id stands for --------------------------------------------------------------

struct TokenTables {
  std::vector<uint32_t> bytes, chars;  // per id: bytes and characters (lead bytes) it decodes to
  std::vector<uint8_t> ends_line;      // per id: its bytes end with '\n', or it ends a document
  bool byte_level;                     // id = byte: counted arithmetically (the fast path)
  int32_t eod;                         // the end-of-document token: no bytes, no characters (-1: none)
  explicit TokenTables(const Tokenizer& tok)
      : byte_level(tok.kind() == TokenizerKind::Byte), eod(tok.end_of_document()) {
    size_t v = size_t(tok.vocab_size());
    bytes.resize(v), chars.resize(v), ends_line.resize(v);
    for (size_t id = 0; id < v; ++id) {
      std::string_view b = tok.token_bytes(int32_t(id));
      bytes[id] = uint32_t(b.size());
      chars[id] = uint32_t(utf8::count_chars(reinterpret_cast<const uint8_t*>(b.data()), b.size()));
      ends_line[id] = !b.empty() && b.back() == '\n';
    }
    if (eod >= 0) bytes[size_t(eod)] = chars[size_t(eod)] = 0, ends_line[size_t(eod)] = 1;
  }
};

// ---- output files -------------------------------------------------------------------------------

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
    int64_t tokens = 0, bytes = 0, chars = 0, docs = 0;  // docs: end-of-document tokens
  };

  ShardStream(std::string dir, const char* split, int width, int64_t shard_tokens, const TokenTables& tables)
      : dir_(std::move(dir)), split_(split), width_(width), shard_tokens_(shard_tokens), tables_(tables) {}

  void append(const int32_t* t, size_t n) {
    while (n > 0) {
      if (parts_.empty() || parts_.back().tokens == shard_tokens_) start_part();
      Part& p = parts_.back();
      size_t m = size_t(std::min<int64_t>(int64_t(n), shard_tokens_ - p.tokens));
      stage_.resize(m * size_t(width_));
      int64_t bytes = 0, chars = 0, docs = 0;
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
          docs += t[i] == tables_.eod;
        }
      }
      p.file->write(stage_.data(), stage_.size());
      p.tokens += int64_t(m), p.bytes += bytes, p.chars += chars, p.docs += docs;
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
          p.docs -= t == tables_.eod;
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
      if (tables_.eod >= 0) entries.back()["documents"] = p.docs;
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
  MT_INPUT(o.workers >= 0, "--workers: must be >= 0 (0: one per core)");
  MT_INPUT(!o.text_key.empty(), "--text-key: must not be empty");
  const std::vector<std::string> files = expand_inputs(o.inputs);

  Tokenizer tok = o.tokenizer == "byte" ? Tokenizer::byte_level() : Tokenizer::from_file(o.tokenizer);
  const TokenTables tables(tok);
  const int width = tok.vocab_size() > 65536 ? 4 : 2;
  fs::create_directories(o.out_dir);

  BuildSummary sum;
  sum.vocab_size = tok.vocab_size();
  sum.files = int64_t(files.size());
  sum.eod_token = tables.eod;
  sum.workers = o.workers > 0 ? o.workers : int(std::max(1u, std::thread::hardware_concurrency()));
  const EncodeSetup setup{o.text_key, o.skip_bad_lines, tables.eod};
  // Without an end-of-document token, a newline goes between two documents when the first lacks one.
  std::vector<int32_t> separator;
  if (tables.eod < 0) tok.encode("\n", &separator);

  ShardStream train(o.out_dir, "train", width, o.shard_tokens, tables);
  std::unique_ptr<MegatronWriter> mega;
  if (o.megatron) {
    sum.megatron_prefix = o.text_key + "_document";
    mega = std::make_unique<MegatronWriter>((fs::path(o.out_dir) / sum.megatron_prefix).string(), tok.vocab_size());
  }
  auto emit = [&](const int32_t* t, size_t n) {
    train.append(t, n);
    if (mega) mega->append(t, n);
  };
  MT_INPUT(o.piece_bytes > 0, "data build: piece_bytes must be > 0");
  PieceReader reader(files, o.format, tables.byte_level, o.piece_bytes);
  BuildProgress prog;
  prog.input_total = reader.bytes_total();
  int64_t invalid_utf8 = 0, first_invalid = -1;
  std::string first_bad;
  bool prev_ends_newline = true;
  {
    WorkerPool pool(sum.workers, tok, setup);
    std::deque<std::future<PieceResult>> in_flight;  // in input order
    const size_t max_in_flight = 2 * size_t(sum.workers);
    Piece piece;
    bool more = true;
    while (true) {
      while (more && in_flight.size() < max_in_flight && (more = reader.next(&piece)))
        in_flight.push_back(pool.submit(std::move(piece)));
      if (in_flight.empty()) break;
      PieceResult r = in_flight.front().get();  // rethrows a worker's error (e.g. a malformed line)
      in_flight.pop_front();
      const int32_t* t = r.ids.data();
      for (const Part& part : r.parts) {
        if (part.begins_doc) {
          if (mega) mega->end_document();
          if (sum.documents > 0 && !prev_ends_newline) emit(separator.data(), separator.size());
          sum.documents += 1;
        }
        emit(t, part.tokens);
        t += part.tokens;
        if (part.ends_doc) prev_ends_newline = part.ends_newline;
      }
      if (r.invalid_utf8 > 0 && invalid_utf8 == 0) first_invalid = prog.text_bytes + r.first_invalid;
      invalid_utf8 += r.invalid_utf8;
      sum.bad_lines += r.bad_lines;
      sum.empty_documents += r.empty_docs;
      if (first_bad.empty()) first_bad = r.first_bad;
      prog.text_bytes += r.text_bytes;
      if (on_progress) {
        prog.input_bytes = reader.bytes_read();
        prog.tokens = train.total();
        prog.seconds = seconds_since(t0);
        on_progress(prog);
      }
    }
  }
  std::vector<int32_t> ids;
  sum.input_bytes = reader.bytes_read();
  sum.jsonl_files = reader.jsonl_files();
  sum.gzip_files = reader.compressed()[size_t(Compression::Gzip)];
  sum.zstd_files = reader.compressed()[size_t(Compression::Zstd)];
  sum.warnings = reader.warnings();
  if (invalid_utf8 > 0)
    sum.warnings.push_back(str("the text has ", invalid_utf8, " invalid UTF-8 sequence", invalid_utf8 > 1 ? "s" : "",
                               " (the first at byte ", first_invalid, "); characters count UTF-8 lead bytes"));
  if (sum.bad_lines > 0)
    sum.warnings.push_back(str(sum.bad_lines, " malformed line", sum.bad_lines > 1 ? "s" : "", " skipped (the first: ",
                               first_bad, ")"));

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
  json docs = {{"count", sum.documents}};
  if (tables.eod >= 0) {
    docs["separator"] = "end_token";
    docs["end_token"] = tables.eod;
    docs["end_text"] = std::string(tok.token_bytes(tables.eod));
  } else {
    docs["separator"] = "newline between two documents when the first does not end with one";
  }
  index["documents"] = docs;
  if (mega) {
    const int64_t n = mega->commit();
    index["megatron"] = {{"prefix", sum.megatron_prefix}, {"dtype_code", mega->dtype_code()}, {"documents", n},
                         {"tokens", sum.train.tokens + sum.val.tokens}};
  }
  write_file_atomic((fs::path(o.out_dir) / "index.json").string(), index.dump(2) + "\n");
  remove_stale_shards(o.out_dir, "train", size_t(sum.train.shards));
  remove_stale_shards(o.out_dir, "val", size_t(sum.val.shards));
  sum.seconds = seconds_since(t0);
  return sum;
}

}  // namespace mt::data

