#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>

#include "test_util.h"
#include "qiusuo/data/idx.h"

using namespace qs;
using namespace qs::testing;

namespace {

std::string dir() {
  static std::string d = temp_dir("idx");
  return d;
}

std::string be32(uint32_t v) {
  return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

std::string idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  std::string s = {0, 0, char(type), char(dims.size())};
  for (uint32_t d : dims) s += be32(d);
  return s;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string idx_error(const std::string& name, const std::string& bytes, bool gz = true) {
  std::string p = dir() + "/" + name;
  if (gz) write_gz(p, bytes); else write_bytes(p, bytes);
  try {
    data::read_idx(p);
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    return e.what();
  }
  ADD_FAILURE() << name << ": expected IOError";
  return "";
}

}  // namespace

TEST(Idx, GzippedU8) {
  std::string data;
  for (int i = 0; i < 2 * 3 * 4; ++i) data.push_back(char(i * 10));
  std::string p = dir() + "/u8.gz";
  write_gz(p, idx_header(0x08, {2, 3, 4}) + data);
  Tensor t = data::read_idx(p);
  EXPECT_EQ(t.dtype(), DType::u8);
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.to_vector()[23], 230.0);
  EXPECT_EQ(t.to_vector()[5], 50.0);
}

TEST(Idx, PlainBigEndianTypes) {
  std::string p = dir() + "/i16";
  write_bytes(p, idx_header(0x0B, {3}) + std::string("\x00\x05\xff\xfe\x80\x00", 6));
  EXPECT_EQ(data::read_idx(p).to_vector(), (std::vector<double>{5, -2, -32768}));
  EXPECT_EQ(data::read_idx(p).dtype(), DType::i32);
  write_bytes(p, idx_header(0x0C, {2}) + be32(0x01020304) + be32(0xfffffff6));
  EXPECT_EQ(data::read_idx(p).to_vector(), (std::vector<double>{16909060, -10}));
  write_bytes(p, idx_header(0x0D, {1}) + std::string("\x3f\xc0\x00\x00", 4));  // 1.5f
  EXPECT_EQ(data::read_idx(p).to_vector(), (std::vector<double>{1.5}));
  write_bytes(p, idx_header(0x0E, {1, 1}) + std::string("\xc0\x04\x00\x00\x00\x00\x00\x00", 8));  // -2.5
  Tensor d = data::read_idx(p);
  EXPECT_EQ(d.dtype(), DType::f64);
  EXPECT_EQ(d.to_vector(), (std::vector<double>{-2.5}));
  write_bytes(p, idx_header(0x09, {2}) + std::string("\x7f\x80", 2));
  EXPECT_EQ(data::read_idx(p).to_vector(), (std::vector<double>{127, -128}));
}

TEST(Idx, TruncatedDataReportsExpectedAndFound) {
  auto m = idx_error("trunc.gz", idx_header(0x08, {10, 10}) + std::string(37, 'x'));
  EXPECT_NE(m.find("need 100 bytes, found 37"), std::string::npos) << m;
  auto m2 = idx_error("trunc_hdr", std::string("\x00\x00\x08\x03\x00\x00\x00\x02", 8), false);
  EXPECT_NE(m2.find("expected 3 dimension sizes, found 1"), std::string::npos) << m2;
  auto m3 = idx_error("trail.gz", idx_header(0x08, {2}) + "abc");
  EXPECT_NE(m3.find("trailing data"), std::string::npos) << m3;
}

TEST(Idx, BadMagic) {
  auto m = idx_error("magic.gz", std::string("\x01\x00\x08\x01", 4) + be32(1) + "a");
  EXPECT_NE(m.find("bad magic"), std::string::npos) << m;
  auto m2 = idx_error("type.gz", idx_header(0x0A, {1}) + "a");
  EXPECT_NE(m2.find("0x0a"), std::string::npos) << m2;
}

// The catalogue of malformed files (tests/malformed/README.md): each is refused with an
// IOError that names the file.
TEST(Idx, MalformedCatalogue) {
  // fuzz_idx: dims [0x23010203, 0, 0x04070804, 0x01020304] hold 0 bytes, so the byte limit
  // passed, but the tensor's strides (empty dims count as 1) overflowed int64.
  const std::string path = std::string(QS_SOURCE_DIR) + "/tests/malformed/idx_zero_dim_hides_huge_dims.idx";
  try {
    data::read_idx(path);
    ADD_FAILURE() << "expected an IOError";
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("byte limit"), std::string::npos) << e.what();
  }
  // fuzz_idx: a valid empty u8 tensor ([0]) passed a null pointer to memcpy (UBSan).
  Tensor empty = data::read_idx(std::string(QS_SOURCE_DIR) + "/tests/malformed/idx_empty_u8.idx");
  EXPECT_EQ(empty.shape(), Shape{0});
}

TEST(Idx, HugeDimsAreRejectedBeforeAllocating) {
  auto m = idx_error("huge.gz", idx_header(0x0E, {0xffffffff, 0xffffffff, 0xffffffff}));
  EXPECT_NE(m.find("byte limit"), std::string::npos) << m;
  // Under the cap but far beyond the stream: reported as truncation, not allocated.
  auto m2 = idx_error("lie.gz", idx_header(0x08, {1u << 30}) + "abc");
  EXPECT_NE(m2.find("need 1073741824 bytes, found 3"), std::string::npos) << m2;
}

TEST(Idx, CorruptGzip) {
  std::string p = dir() + "/corrupt.gz";
  write_gz(p, idx_header(0x08, {4000}) + std::string(4000, 'q'));
  std::string b = read_bytes(p);
  for (size_t i = 20; i < b.size() - 8; ++i) b[i] = char(b[i] ^ 0x5a);
  write_bytes(p, b);
  EXPECT_THROW(data::read_idx(p), IOError);
}

TEST(FashionMNIST, MissingFilesGiveAHint) {
  try {
    data::FashionMNIST ds(true, dir() + "/nowhere");
    FAIL() << "expected IOError";
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find("apt-get install dataset-fashion-mnist"), std::string::npos) << e.what();
  }
}

TEST(FashionMNIST, SmallFakeRootAndCountMismatch) {
  std::string root = dir() + "/fake";
  std::filesystem::create_directories(root);
  std::string pix(3 * 28 * 28, '\0');
  pix[0] = char(255);
  pix[28 * 28] = char(51);
  write_gz(root + "/t10k-images-idx3-ubyte.gz", idx_header(0x08, {3, 28, 28}) + pix);
  write_gz(root + "/t10k-labels-idx1-ubyte.gz", idx_header(0x08, {3}) + std::string("\x09\x00\x04", 3));
  data::FashionMNIST ds(false, root);
  EXPECT_EQ(ds.images.shape(), (Shape{3, 1, 28, 28}));
  EXPECT_EQ(ds.images.dtype(), DType::f32);
  EXPECT_EQ(ds.labels.dtype(), DType::i64);
  EXPECT_EQ(ds.labels.to_vector(), (std::vector<double>{9, 0, 4}));
  EXPECT_FLOAT_EQ(ds.images.data_ptr<float>()[0], 1.0f);
  EXPECT_FLOAT_EQ(ds.images.data_ptr<float>()[28 * 28], 0.2f);
  data::FashionMNIST nds(false, root, true);
  EXPECT_NEAR(nds.images.data_ptr<float>()[28 * 28], (0.2 - 0.2860) / 0.3530, 1e-6);
  write_gz(root + "/t10k-labels-idx1-ubyte.gz", idx_header(0x08, {2}) + std::string("\x09\x00", 2));
  EXPECT_THROW(data::FashionMNIST(false, root), IOError);
  write_gz(root + "/t10k-labels-idx1-ubyte.gz", idx_header(0x08, {3}) + std::string("\x09\x00\x0a", 3));
  EXPECT_THROW(data::FashionMNIST(false, root), IOError);
}

TEST(FashionMNIST, RealTestSetWhenInstalled) {
  if (!std::filesystem::exists(std::string(data::FashionMNIST::kDefaultRoot) + "/t10k-labels-idx1-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  data::FashionMNIST ds(false);
  EXPECT_EQ(ds.size(), 10000);
  EXPECT_EQ(ds.images.shape(), (Shape{10000, 1, 28, 28}));
  std::vector<int64_t> counts(10, 0);
  for (double y : ds.labels.to_vector()) counts[size_t(y)]++;
  for (int64_t c : counts) EXPECT_EQ(c, 1000);  // the test split is balanced
  double mean = 0;
  const float* p = ds.images.data_ptr<float>();
  for (int64_t i = 0; i < ds.images.numel(); ++i) mean += p[i];
  EXPECT_NEAR(mean / double(ds.images.numel()), 0.2860, 0.01);
}
