// IDX files (the MNIST family's format) and the Fashion-MNIST dataset.
//
// IDX: magic 0x00 0x00 <type> <ndims>, then ndims big-endian u32 sizes, then the
// elements big-endian, row-major. Types: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32,
// 0x0D f32, 0x0E f64. Files may be gzip-compressed or plain.
#pragma once
#include <string>

#include "qiusuo/tensor.h"

namespace qs::data {

// Reads an IDX file into a contiguous tensor of the file's shape: u8 -> u8, i8 -> i8,
// i16 -> i32 (widened), i32 -> i32, f32 -> f32, f64 -> f64.
// Errors (qs::IOError naming the file): cannot open; bad magic (expected 0x00 0x00
// and a known type); truncated header; the element count overflowing or exceeding
// 2 GiB; the stream holding fewer bytes than the dims need (with the expected and
// found byte counts) or more (trailing data); a corrupt gzip stream. The data size is
// checked against the stream before the tensor is allocated.
Tensor read_idx(const std::string& path);

constexpr uint64_t kIdxMaxBytes = uint64_t(2) << 30;  // 2 GiB

// Fashion-MNIST (Xiao et al. 2017): 60000 train / 10000 test 28x28 grey images, 10
// classes. Files under `root`: {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz.
struct FashionMNIST {
  static constexpr const char* kDefaultRoot = "/usr/share/datasets/fashion-mnist";
  static constexpr double kMean = 0.2860, kStd = 0.3530;  // of the training images in [0, 1]

  // images: f32 [N, 1, 28, 28] in [0, 1], or (x - kMean) / kStd when `normalize`.
  // labels: i64 [N] in [0, 9].
  // Errors (qs::IOError): missing files (with a hint: apt-get install
  // dataset-fashion-mnist), wrong dtype or shape, image and label counts that differ,
  // labels outside [0, 9].
  explicit FashionMNIST(bool train, const std::string& root = kDefaultRoot, bool normalize = false);
  int64_t size() const { return labels.size(0); }

  Tensor images;
  Tensor labels;
};

}  // namespace qs::data
