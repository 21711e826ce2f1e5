#include <filesystem>

#include "qiusuo/data/idx.h"

namespace qs::data {
namespace {

Tensor read_checked(const std::string& path, DType dtype, const Shape& tail) {
  if (!std::filesystem::exists(path))
    throw IOError(fmt::format("fashion-mnist: {}: file not found. hint: apt-get install "
                              "dataset-fashion-mnist, or pass the directory holding the files as root",
                              path));
  Tensor t = read_idx(path);
  Shape want_tail(t.shape().begin() + std::min<size_t>(1, t.shape().size()), t.shape().end());
  if (t.dtype() != dtype || t.dim() != int64_t(tail.size()) + 1 || want_tail != tail) {
    std::string want = "[N";
    for (int64_t d : tail) want += fmt::format(", {}", d);
    throw IOError(fmt::format("fashion-mnist: {}: expected {} {}], found {} {}", path, dtype_name(dtype), want,
                              dtype_name(t.dtype()), shape_str(t.shape())));
  }
  return t;
}

}  // namespace

FashionMNIST::FashionMNIST(bool train, const std::string& root, bool normalize) {
  std::string split = train ? "train" : "t10k";
  std::string ipath = root + "/" + split + "-images-idx3-ubyte.gz";
  std::string lpath = root + "/" + split + "-labels-idx1-ubyte.gz";
  Tensor img = read_checked(ipath, DType::u8, {28, 28});
  Tensor lab = read_checked(lpath, DType::u8, {});
  int64_t n = img.size(0);
  if (lab.size(0) != n)
    throw IOError(fmt::format("fashion-mnist: {}: expected as many labels as images ({} in {}), found {}",
                              lpath, n, ipath, lab.size(0)));
  images = empty({n, 1, 28, 28}, DType::f32);
  labels = empty({n}, DType::i64);
  const uint8_t* ip = static_cast<const uint8_t*>(img.raw_data());
  float* op = images.data_ptr<float>();
  double scale = normalize ? 1.0 / (255.0 * kStd) : 1.0 / 255.0;
  double shift = normalize ? kMean / kStd : 0.0;
  for (int64_t i = 0; i < n * 28 * 28; ++i) op[i] = float(ip[i] * scale - shift);
  const uint8_t* lp = static_cast<const uint8_t*>(lab.raw_data());
  int64_t* yp = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (lp[i] > 9)
      throw IOError(fmt::format("fashion-mnist: {}: label {}: expected a class in [0, 9], found {}", lpath, i,
                                int(lp[i])));
    yp[i] = lp[i];
  }
}

}  // namespace qs::data
