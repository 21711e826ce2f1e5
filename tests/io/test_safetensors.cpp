#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "test_util.h"
#include "qiusuo/io/safetensors.h"

using namespace qs;
using namespace qs::testing;

namespace {

std::string dir() {
  static std::string d = temp_dir("safetensors");
  return d;
}

// Element-wise byte equality of two tensors (logical order), including dtype and shape.
void expect_same(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.dtype(), b.dtype());
  ASSERT_EQ(a.shape(), b.shape());
  Tensor ca = a.contiguous(), cb = b.contiguous();
  size_t n = size_t(a.numel()) * a.element_size();
  EXPECT_EQ(0, std::memcmp(ca.raw_data(), cb.raw_data(), n));
}

std::string load_error(const std::string& name, const std::string& bytes) {
  std::string p = dir() + "/" + name;
  write_bytes(p, bytes);
  try {
    io::load_safetensors(p);
  } catch (const IOError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(p), std::string::npos) << "message must name the file: " << msg;
    return msg;
  }
  ADD_FAILURE() << name << ": expected an IOError";
  return "";
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtype) {
  io::NamedTensors ts;
  const DType all[] = {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i8,
                       DType::u8,  DType::i32, DType::i64,  DType::b8};
  Generator g(7);
  for (DType t : all) {
    Tensor x = t == DType::b8 ? randint(0, 2, {3, 5}, DType::i64, &g).to(DType::f32)
                              : randint(-100, 100, {3, 5}, DType::i64, &g).to(DType::f64);
    Tensor y = empty({3, 5}, t);
    for (int64_t i = 0; i < 15; ++i)
      store_from_double(y.raw_data(), t, i, load_as_double(x.contiguous().raw_data(), x.dtype(), i) *
                                                (is_floating(t) ? 0.37 : 1.0));
    ts.emplace_back(std::string("t_") + dtype_name(t), y);
  }
  ts.emplace_back("scalar", scalar_tensor(3.5, DType::f64));
  ts.emplace_back("empty", empty({0, 4}, DType::f32));
  std::string p = dir() + "/all.safetensors";
  io::save_safetensors(p, ts, {{"who", "qiusuo"}, {"n", "9"}});
  auto f = io::load_safetensors(p);
  ASSERT_EQ(f.tensors.size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(f.tensors[i].first, ts[i].first);
    expect_same(f.tensors[i].second, ts[i].second);
  }
  EXPECT_EQ(f.metadata.at("who"), "qiusuo");
  EXPECT_EQ(f.metadata.at("n"), "9");
  // Header padded to a multiple of 8.
  std::string bytes = read_bytes(p);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
}

TEST(Safetensors, NonContiguousInputIsWrittenInLogicalOrder) {
  Tensor base = arange(0, 24, 1, DType::f32).view({2, 3, 4});
  Tensor t = base.permute({2, 0, 1}).slice(0, 1, 4, 2);  // [2, 2, 3], strided
  ASSERT_FALSE(t.is_contiguous());
  std::string p = dir() + "/view.safetensors";
  io::save_safetensors(p, {{"v", t}, {"bf", base.to(DType::bf16).transpose(0, 2)}});
  auto f = io::load_safetensors(p);
  EXPECT_EQ(f.tensors[0].second.to_vector(), t.to_vector());
  EXPECT_EQ(f.tensors[0].second.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(f.tensors[1].second.to_vector(), base.to(DType::bf16).transpose(0, 2).to_vector());
}

TEST(Safetensors, SaveRejectsBadNamesAndKeepsOldFile) {
  std::string p = dir() + "/keep.safetensors";
  io::save_safetensors(p, {{"a", ones({2})}});
  std::string before = read_bytes(p);
  EXPECT_THROW(io::save_safetensors(p, {{"a", ones({2})}, {"a", ones({3})}}), IOError);
  EXPECT_THROW(io::save_safetensors(p, {{"__metadata__", ones({2})}}), IOError);
  EXPECT_THROW(io::save_safetensors(p, {{"", ones({2})}}), IOError);
  EXPECT_EQ(read_bytes(p), before);
}

TEST(Safetensors, SaveIntoMissingDirectoryFailsCleanly) {
  EXPECT_THROW(io::save_safetensors(dir() + "/no/such/dir/x.safetensors", {{"a", ones({1})}}),
               IOError);
}

TEST(Safetensors, AcceptsSpacePaddingAndAnyEntryOrder) {
  std::string data(12, '\0');
  float v[3] = {1.5f, -2.f, 3.f};
  int32_t w = 77;
  std::memcpy(&data[0], &w, 4);
  std::memcpy(&data[4], v, 8);  // b: 2 floats
  std::string h = R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                  R"("a":{"dtype":"I32","shape":[],"data_offsets":[0,4]}})";
  h.append(5, ' ');
  std::string p = dir() + "/order.safetensors";
  write_bytes(p, safetensors_bytes(h, data));
  auto f = io::load_safetensors(p);
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].first, "a");  // data-buffer order
  EXPECT_EQ(f.tensors[0].second.item(), 77);
  EXPECT_EQ(f.tensors[1].second.to_vector(), (std::vector<double>{1.5, -2.0}));
}

// Each malformed file gives an IOError that names the problem.
TEST(SafetensorsMalformed, TruncatedHeaderLength) {
  EXPECT_NE(load_error("short", std::string("\x05\x00\x00", 3)).find("at least 8 bytes"), std::string::npos);
  EXPECT_NE(load_error("empty", "").find("found a file of 0 bytes"), std::string::npos);
}

TEST(SafetensorsMalformed, HeaderLengthPastEnd) {
  std::string h = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  auto m = load_error("hlen", safetensors_bytes(h, "x", int64_t(h.size()) + 50));
  EXPECT_NE(m.find("header length"), std::string::npos) << m;
  auto m2 = load_error("hbig", safetensors_bytes("{}", "", int64_t(1) << 40));
  EXPECT_NE(m2.find("at most 100000000"), std::string::npos) << m2;
}

TEST(SafetensorsMalformed, InvalidJson) {
  auto m = load_error("json", safetensors_bytes(R"({"a":{"dtype":"F32",)", ""));
  EXPECT_NE(m.find("JSON"), std::string::npos) << m;
  auto m2 = load_error("notobj", safetensors_bytes("[1, 2]  ", ""));
  EXPECT_NE(m2.find("JSON object"), std::string::npos) << m2;
  auto m3 = load_error("utf8", safetensors_bytes("{\"a\xff\":1}", ""));
  EXPECT_NE(m3.find("UTF-8"), std::string::npos) << m3;
}

TEST(SafetensorsMalformed, UnknownDtype) {
  auto m = load_error("dtype", safetensors_bytes(
      R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "ab"));
  EXPECT_NE(m.find("tensor 'w': dtype"), std::string::npos) << m;
  EXPECT_NE(m.find("F8_E4M3"), std::string::npos) << m;
}

TEST(SafetensorsMalformed, NegativeOrNonIntegerShape) {
  auto m = load_error("neg", safetensors_bytes(
      R"({"w":{"dtype":"U8","shape":[-2],"data_offsets":[0,2]}})", "ab"));
  EXPECT_NE(m.find("tensor 'w': shape"), std::string::npos) << m;
  EXPECT_NE(m.find("-2"), std::string::npos) << m;
  auto m2 = load_error("flt", safetensors_bytes(
      R"({"w":{"dtype":"U8","shape":[2.5],"data_offsets":[0,2]}})", "ab"));
  EXPECT_NE(m2.find("non-negative integer"), std::string::npos) << m2;
}

TEST(SafetensorsMalformed, OverlappingOffsets) {
  auto m = load_error("overlap", safetensors_bytes(
      R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
      R"("b":{"dtype":"U8","shape":[3],"data_offsets":[2,5]}})", "abcde"));
  EXPECT_NE(m.find("overlap"), std::string::npos) << m;
}

TEST(SafetensorsMalformed, GapBetweenTensors) {
  auto m = load_error("gap", safetensors_bytes(
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
      R"("b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})", "abcde"));
  EXPECT_NE(m.find("gap of 1 bytes"), std::string::npos) << m;
}

TEST(SafetensorsMalformed, NotCoveringTheBuffer) {
  auto m = load_error("cover", safetensors_bytes(
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "abcdef"));
  EXPECT_NE(m.find("4 bytes not covered"), std::string::npos) << m;
}

TEST(SafetensorsMalformed, SizeShapeMismatch) {
  auto m = load_error("size", safetensors_bytes(
      R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", std::string(20, 'x')));
  EXPECT_NE(m.find("expected end - begin == 24 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("found 20 bytes"), std::string::npos) << m;
  auto m2 = load_error("ovf", safetensors_bytes(
      R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""));
  EXPECT_NE(m2.find("overflow"), std::string::npos) << m2;
  auto m3 = load_error("rev", safetensors_bytes(
      R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[3,0]}})", "abc"));
  EXPECT_NE(m3.find("begin <= end"), std::string::npos) << m3;
}

TEST(SafetensorsMalformed, DataPastEof) {
  auto m = load_error("eof", safetensors_bytes(
      R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(10, 'x')));
  EXPECT_NE(m.find("need 16 bytes, found only 10"), std::string::npos) << m;
}

TEST(SafetensorsMalformed, DuplicateNamesMissingFieldsBadMetadataBadBool) {
  auto m = load_error("dup", safetensors_bytes(
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
      R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", "ab"));
  EXPECT_NE(m.find("more than once"), std::string::npos) << m;
  auto m2 = load_error("nofield", safetensors_bytes(R"({"a":{"dtype":"U8","shape":[1]}})", "a"));
  EXPECT_NE(m2.find("'data_offsets'"), std::string::npos) << m2;
  auto m3 = load_error("meta", safetensors_bytes(R"({"__metadata__":{"k":3}})", ""));
  EXPECT_NE(m3.find("__metadata__['k']"), std::string::npos) << m3;
  auto m4 = load_error("bool", safetensors_bytes(
      R"({"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", std::string("\x01\x07", 2)));
  EXPECT_NE(m4.find("0 or 1"), std::string::npos) << m4;
}

// A header nested 200,000 deep (llama.cpp-style hostile metadata): refused while parsing,
// with an IOError, before any value is copied or printed (either would overflow the stack).
TEST(Safetensors, DeeplyNestedHeaderIsRefused) {
  std::string header = "{\"x\":" + std::string(200000, '[') + std::string(200000, ']') + "}";
  std::string bytes(8, '\0');
  uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  std::string msg = load_error("nested.safetensors", bytes + header);
  EXPECT_NE(msg.find("nested deeper than 128"), std::string::npos) << msg.substr(0, 300);
  // The same in __metadata__ of an otherwise valid file.
  header = "{\"__metadata__\":{\"a\":" + std::string(5000, '[') + std::string(5000, ']') + "}}";
  n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  msg = load_error("nested_meta.safetensors", bytes + header);
  EXPECT_NE(msg.find("nested deeper than 128"), std::string::npos) << msg.substr(0, 300);
}
