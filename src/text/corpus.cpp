// Text corpora: files, folders and the King James Bible, validated and split.
#include "qiusuo/text/corpus.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "io/atomic_file.h"
#include "qiusuo/error.h"
#include "text/unicode.h"
#include "io/read_file.h"

namespace fs = std::filesystem;

namespace qs::text {
namespace {

// 4 GiB per file (the KJV is 4.4 MB); the corpus is held in memory as text and tokens.
std::string read_file(const std::string& path) { return io::read_file_bounded(path, uint64_t(4) << 30, "corpus"); }

void check_utf8(std::string_view text, const std::string& source) {
  size_t bad = detail::first_invalid_utf8(text);
  if (bad == std::string_view::npos) return;
  std::string bytes;
  for (size_t i = bad; i < std::min(text.size(), bad + 4); ++i) bytes += fmt::format(" {:02x}", uint8_t(text[i]));
  throw IOError(fmt::format("corpus: {}: expected UTF-8 text, found an invalid sequence at byte offset {} "
                            "(bytes{})", source, bad, bytes));
}

size_t cut_after_line(const std::string& text, double fraction) {
  size_t pos = size_t(fraction * double(text.size()));
  if (pos >= text.size()) return text.size();
  size_t nl = text.find('\n', pos);
  return nl == std::string::npos ? text.size() : nl + 1;
}

// ---- the King James Bible
constexpr const char* kKjvCacheName = "kjv-v1.txt";  // bump when the format changes
constexpr int64_t kKjvVerses = 31102;

std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/bin:/bin";
  while (!dirs.empty()) {
    size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    dirs = colon == std::string_view::npos ? "" : dirs.substr(colon + 1);
    std::string p = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string run_bible(const std::string& program) {
  std::string cmd = "echo 'gen1:1-rev22:21' | '" + program + "' -f 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw IOError(fmt::format("kjv: cannot run '{}'", cmd));
  std::string out;
  char buf[1 << 16];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  int status = ::pclose(p);
  if (status != 0)
    throw IOError(fmt::format("kjv: '{}' failed (status {}); its output began: {}", cmd, status, out.substr(0, 200)));
  return out;
}

bool is_prompt(std::string_view line) { return line.starts_with("bible(") && line.find("]> ") != line.npos; }

// "Ge1:1 ...", "1Sm3:4 ...", "SSol1:1 ...": an optional digit, a book, chapter:verse, space.
bool is_verse(std::string_view line) {
  size_t i = 0;
  if (i < line.size() && line[i] >= '1' && line[i] <= '3') ++i;
  size_t book = i;
  while (i < line.size() && std::isalpha(uint8_t(line[i]))) ++i;
  if (i == book || !std::isupper(uint8_t(line[book]))) return false;
  size_t ch = i;
  while (i < line.size() && std::isdigit(uint8_t(line[i]))) ++i;
  if (i == ch || i >= line.size() || line[i++] != ':') return false;
  size_t vs = i;
  while (i < line.size() && std::isdigit(uint8_t(line[i]))) ++i;
  return i > vs && i < line.size() && line[i] == ' ';
}

bool looks_like_kjv(std::string_view text) {
  return text.starts_with("Ge1:1 In the beginning") && text.ends_with("\n") &&
         text.substr(text.rfind('\n', text.size() - 2) + 1).starts_with("Rev22:21 ");
}

}  // namespace

const char* split_name(Split s) {
  switch (s) {
    case Split::train: return "train";
    case Split::validation: return "validation";
    case Split::test: return "test";
  }
  return "?";
}

std::string default_cache_dir() {
  if (const char* d = std::getenv("QIUSUO_CACHE"); d && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/qiusuo";
  if (const char* d = std::getenv("HOME"); d && *d) return std::string(d) + "/.cache/qiusuo";
  return ".qiusuo-cache";
}

TextCorpus::TextCorpus(std::string text, std::string source) : text_(std::move(text)), source_(std::move(source)) {
  if (text_.empty()) throw IOError(fmt::format("corpus: {}: the corpus is empty; expected some UTF-8 text", source_));
  check_utf8(text_, source_);
  cut_[0] = cut_after_line(text_, kTrainFraction);
  cut_[1] = std::max(cut_[0], cut_after_line(text_, kTrainFraction + kValidationFraction));
}

std::string_view TextCorpus::split(Split s) const {
  std::string_view t = text_;
  switch (s) {
    case Split::train: return t.substr(0, cut_[0]);
    case Split::validation: return t.substr(cut_[0], cut_[1] - cut_[0]);
    case Split::test: return t.substr(cut_[1]);
  }
  return {};
}

TextCorpus TextCorpus::from_path(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    std::string text = read_file(path);
    check_utf8(text, path);
    return TextCorpus(std::move(text), path);
  }
  if (!fs::is_directory(path, ec))
    throw IOError(fmt::format("corpus: {}: expected a UTF-8 file or a folder of them, found no such file or folder",
                              path));
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file()) files.push_back(it->path().string());
  if (ec) throw IOError(fmt::format("corpus: {}: cannot list the folder: {}", path, ec.message()));
  if (files.empty()) throw IOError(fmt::format("corpus: {}: the folder holds no files; expected UTF-8 text", path));
  std::sort(files.begin(), files.end());
  std::string text;
  for (size_t i = 0; i < files.size(); ++i) {
    std::string part = read_file(files[i]);
    check_utf8(part, files[i]);  // offsets within the file, not the joined text
    if (i > 0) text += '\n';
    text += part;
  }
  return TextCorpus(std::move(text), path);
}

std::string kjv_from_bible_output(std::string_view output) {
  std::vector<std::string> verses;
  bool in_verses = false;
  while (!output.empty()) {
    size_t nl = output.find('\n');
    std::string_view line = output.substr(0, nl);
    output = nl == std::string_view::npos ? "" : output.substr(nl + 1);
    if (is_prompt(line)) {  // the first prompt echoes the query; the next one ends the answer
      if (in_verses) break;
      in_verses = true;
    } else if (in_verses && is_verse(line)) {
      verses.emplace_back(line);
    } else if (in_verses && !line.empty() && !verses.empty()) {
      verses.back().append(" ").append(line);  // a verse wrapped over several lines
    }
  }
  std::string text;
  for (const std::string& v : verses) text += v + "\n";
  if (int64_t(verses.size()) != kKjvVerses || !looks_like_kjv(text))
    throw IOError(fmt::format("kjv: expected {} verses from 'Ge1:1 In the beginning' to 'Rev22:21', found {} "
                              "verses, starting '{}'", kKjvVerses, verses.size(),
                              verses.empty() ? "" : verses.front().substr(0, 40)));
  return text;
}

TextCorpus TextCorpus::kjv(const std::string& cache_dir) {
  std::string cached = cache_dir + "/" + kKjvCacheName;
  std::error_code ec;
  if (fs::is_regular_file(cached, ec)) {
    std::string text = read_file(cached);
    if (looks_like_kjv(text)) return TextCorpus(std::move(text), cached);
  }
  std::string bible = find_program("bible");
  if (bible.empty())
    throw IOError("kjv: the `bible` program is not installed (Debian packages bible-kjv, bible-kjv-text). "
                  "hint: run scripts/install-deps.sh, or pass --corpus FILE");
  std::string text = kjv_from_bible_output(run_bible(bible));
  fs::create_directories(cache_dir, ec);
  if (ec) throw IOError(fmt::format("kjv: cannot create the cache folder {}: {}", cache_dir, ec.message()));
  io::detail::AtomicFileWriter w(cached);
  w.write(text.data(), text.size());
  w.commit();
  return TextCorpus(std::move(text), cached);
}

}  // namespace qs::text
