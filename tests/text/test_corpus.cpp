// Text corpora (files, folders, the King James Bible), splits and token windows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <filesystem>

#include "test_util.h"
#include "qiusuo/text/corpus.h"

using namespace qs;
using namespace qs::text;
namespace fs = std::filesystem;

namespace {

std::string dir() {
  static std::string d = qs::testing::temp_dir("corpus");
  return d;
}

using qs::testing::error_of;

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string numbered_lines(int n) {
  std::string t;
  for (int i = 0; i < n; ++i) t += fmt::format("line {:04d}\n", i);  // 10 bytes each
  return t;
}

std::vector<int64_t> values(const Tensor& t) { return t.to_vector_as<int64_t>(); }

}  // namespace

TEST(TextCorpus, FromFile) {
  std::string p = dir() + "/one.txt";
  qs::testing::write_bytes(p, "Γειά σου\nworld\n");
  TextCorpus c = TextCorpus::from_path(p);
  EXPECT_EQ(c.text(), "Γειά σου\nworld\n");
  EXPECT_EQ(c.source(), p);
  EXPECT_EQ(c.num_bytes(), int64_t(c.text().size()));
}

TEST(TextCorpus, FromFolderSortedAndJoined) {
  std::string d = dir() + "/folder";
  fs::create_directories(d + "/sub");
  qs::testing::write_bytes(d + "/b.txt", "bee");
  qs::testing::write_bytes(d + "/a.txt", "ay\n");
  qs::testing::write_bytes(d + "/sub/c.txt", "sea");
  TextCorpus c = TextCorpus::from_path(d);
  EXPECT_EQ(c.text(), "ay\n\nbee\nsea");
}

TEST(TextCorpus, InvalidUtf8NamesFileAndOffset) {
  std::string p = dir() + "/bad.txt";
  qs::testing::write_bytes(p, "good text\n\xC3(");
  std::string e = error_of([&] { TextCorpus::from_path(p); });
  EXPECT_TRUE(has(e, p) && has(e, "byte offset 10")) << e;
  for (std::string bad : {"\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "ab\xE2\x82", "\xFF"})
    EXPECT_TRUE(has(error_of([&] { TextCorpus(bad, "mem"); }), "invalid sequence")) << bad;

  std::string d = dir() + "/badfolder";
  fs::create_directories(d);
  qs::testing::write_bytes(d + "/1.txt", "fine");
  qs::testing::write_bytes(d + "/2.txt", "ok \x80");
  e = error_of([&] { TextCorpus::from_path(d); });
  EXPECT_TRUE(has(e, d + "/2.txt") && has(e, "byte offset 3")) << e;
}

TEST(TextCorpus, EmptyAndMissing) {
  qs::testing::write_bytes(dir() + "/empty.txt", "");
  EXPECT_TRUE(has(error_of([&] { TextCorpus::from_path(dir() + "/empty.txt"); }), "empty"));
  fs::create_directories(dir() + "/nothing");
  EXPECT_TRUE(has(error_of([&] { TextCorpus::from_path(dir() + "/nothing"); }), "no files"));
  EXPECT_THROW(TextCorpus::from_path(dir() + "/missing.txt"), IOError);
}

TEST(TextCorpus, SplitsOnLineBoundaries) {
  TextCorpus c(numbered_lines(1000), "lines");  // 10000 bytes
  EXPECT_EQ(c.split_bytes(Split::train), 9010);  // the line holding byte 9000 stays in train
  EXPECT_EQ(c.split_bytes(Split::validation), 500);
  EXPECT_EQ(c.split_bytes(Split::test), 490);
  std::string joined = std::string(c.split(Split::train)) + std::string(c.split(Split::validation)) +
                       std::string(c.split(Split::test));
  EXPECT_EQ(joined, c.text());
  EXPECT_TRUE(c.split(Split::validation).starts_with("line 0901\n"));

  TextCorpus one_line("no newline at all", "mem");  // everything in train
  EXPECT_EQ(one_line.split_bytes(Split::train), one_line.num_bytes());
  EXPECT_EQ(one_line.split_bytes(Split::test), 0);
}

TEST(TokenStream, SamplingIsSeededAndShifted) {
  TextCorpus c(numbered_lines(500), "lines");
  ByteTokenizer tok;
  TokenStream s(c, Split::train, tok);
  EXPECT_EQ(s.name(), "train");
  EXPECT_EQ(s.size(), c.split_bytes(Split::train));
  EXPECT_DOUBLE_EQ(s.bytes_per_token(), 1.0);
  Generator g1(42), g2(42), g3(43);
  data::Batch a = s.sample(4, 16, g1), b = s.sample(4, 16, g2), d = s.sample(4, 16, g3);
  EXPECT_EQ(a.x.shape(), (Shape{4, 16}));
  EXPECT_EQ(a.y.dtype(), DType::i64);
  EXPECT_EQ(values(a.x), values(b.x));
  EXPECT_EQ(values(a.y), values(b.y));
  EXPECT_NE(values(a.x), values(d.x));
  std::vector<int64_t> x = values(a.x), y = values(a.y);
  for (int r = 0; r < 4; ++r) {
    for (int t = 0; t + 1 < 16; ++t) EXPECT_EQ(y[r * 16 + t], x[r * 16 + t + 1]);
    // The window is a contiguous piece of the stream.
    auto start = std::search(s.ids().begin(), s.ids().end(), x.begin() + r * 16, x.begin() + r * 16 + 16);
    ASSERT_NE(start, s.ids().end());
  }
  EXPECT_EQ(s.sample(2, s.size() - 1, g1).x.size(1), s.size() - 1);  // the longest window fits
}

TEST(TokenStream, EvaluationWindowsInOrder) {
  TokenStream s(std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 10, "validation");
  EXPECT_EQ(s.num_windows(3), 3);  // (10 - 1) / 3
  EXPECT_EQ(s.num_windows(4), 2);  // 9 % 4 = 1 token dropped
  data::Batch all = s.windows(3, 0, 100);
  EXPECT_EQ(values(all.x), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(values(all.y), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  data::Batch last = s.windows(3, 2, 1);
  EXPECT_EQ(values(last.x), (std::vector<int64_t>{6, 7, 8}));
  EXPECT_THROW(s.windows(3, 3, 1), Error);
  EXPECT_THROW(s.windows(3, 0, 0), Error);
}

TEST(TokenStream, TooShortSplitNamesIt) {
  TextCorpus c(numbered_lines(100), "lines");
  ByteTokenizer tok;
  TokenStream v(c, Split::validation, tok);
  EXPECT_EQ(v.size(), 50);
  Generator g(1);
  std::string e = error_of([&] { v.sample(1, 64, g); });
  EXPECT_TRUE(has(e, "'validation'") && has(e, "50 tokens") && has(e, "seq + 1 = 65")) << e;
  EXPECT_TRUE(has(error_of([&] { v.num_windows(50); }), "50 tokens"));
  EXPECT_NO_THROW(v.num_windows(49));
  EXPECT_THROW(v.sample(0, 8, g), Error);
  EXPECT_THROW(v.sample(1, 0, g), Error);
  TokenStream none(std::vector<int32_t>{}, 0, "test");
  EXPECT_THROW(none.bytes_per_token(), Error);
}

TEST(Kjv, ParsesBibleOutput) {
  std::string fake = "bible: Debian/BRS Release 4.36\nHit '?' for help.\nGe1:1 In the beginning\n"
                     "bible(KJV) [Gen1:1]> gen1:1-rev22:21\nGe1:1 In the beginning God\nRev22:21 The end.\n"
                     "bible(KJV) [Re22:21]> \n";
  std::string e = error_of([&] { kjv_from_bible_output(fake); });
  EXPECT_TRUE(has(e, "expected 31102 verses") && has(e, "found 2 verses")) << e;
}

TEST(Kjv, JoinsWrappedVerses) {
  std::string out = "bible: Debian/BRS Release 4.36\nHit '?' for help.\nGe1:1 In\n"
                    "bible(KJV) [Gen1:1]> gen1:1-rev22:21\nGe1:1 In the beginning God\ncreated the earth.\n";
  for (int i = 2; i < 31102; ++i) out += fmt::format("Ge1:{} v\n", i);
  out += "Rev22:21 Amen.\nbible(KJV) [Re22:21]> \n";
  std::string text = kjv_from_bible_output(out);
  EXPECT_TRUE(text.starts_with("Ge1:1 In the beginning God created the earth.\nGe1:2 v\n"));
  EXPECT_TRUE(text.ends_with("\nGe1:31101 v\nRev22:21 Amen.\n"));
}

TEST(Kjv, RealPackage) {
  if (std::system("command -v bible >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "the `bible` program is not installed (scripts/install-deps.sh)";
  std::string cache = dir() + "/cache";
  ::setenv("QIUSUO_CACHE", cache.c_str(), 1);
  EXPECT_EQ(default_cache_dir(), cache);
  TextCorpus c = TextCorpus::kjv();
  EXPECT_GT(c.num_bytes(), 4'300'000);
  EXPECT_LT(c.num_bytes(), 4'500'000);
  EXPECT_TRUE(c.text().starts_with("Ge1:1 In the beginning God created the heaven and the earth.\n"));
  EXPECT_TRUE(c.text().ends_with("\nRev22:21 The grace of our Lord Jesus Christ be with you all. Amen.\n"));
  EXPECT_EQ(std::count(c.text().begin(), c.text().end(), '\n'), 31102);
  std::string cached = cache + "/kjv-v1.txt";
  ASSERT_TRUE(fs::exists(cached));
  EXPECT_EQ(c.source(), cached);
  EXPECT_EQ(TextCorpus::kjv().text(), c.text());  // read back from the cache
  qs::testing::write_bytes(cached, "Ge1:1 In the beginning God\n");  // a damaged cache is rebuilt
  EXPECT_EQ(TextCorpus::kjv(cache).text(), c.text());
  EXPECT_TRUE(c.split(Split::test).ends_with("Amen.\n"));
  EXPECT_TRUE(c.split(Split::validation).ends_with("\n"));
  ::unsetenv("QIUSUO_CACHE");
}
