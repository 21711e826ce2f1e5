// safetensors (https://github.com/huggingface/safetensors), exact to the format:
//   [u64 little-endian N][N bytes of UTF-8 JSON header][data buffer]
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the data buffer) plus an optional "__metadata__" string->string
// object. dtypes: F32 F64 BF16 F16 I8 U8 I32 I64 BOOL (qiusuo's f32 ... b8).
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "qiusuo/tensor.h"

namespace qs::io {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct SafetensorsFile {
  NamedTensors tensors;  // in data-buffer order (= the order they were saved in)
  std::map<std::string, std::string> metadata;
};

// The largest header accepted (as in the reference implementation).
constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

// Writes `tensors` in the given order, row-major little-endian (non-contiguous views
// are copied), header padded with spaces to a multiple of 8 bytes.
// Atomic: writes "<path>.tmp.<pid>", fsyncs, renames over `path`, fsyncs the directory;
// on any failure the temporary file is removed and an existing `path` is left intact.
// Errors (qs::IOError): empty or duplicate names, a name "__metadata__", undefined
// tensors, any write failure.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a whole file. Everything in the header is validated before any tensor is
// allocated: size >= 8, header length <= limit and within the file, a JSON object,
// unique names, known dtypes, non-negative integer shapes, data_offsets [begin, end]
// with end - begin == numel * dtype size, offsets contiguous from 0 covering the data
// buffer exactly; BOOL bytes must be 0 or 1. Every failure is a qs::IOError naming the
// file, the tensor and field, what was expected and what was found. No partial results.
SafetensorsFile load_safetensors(const std::string& path);

// "F32", "BF16", ... for a dtype (qs::IOError never: every qiusuo dtype has a name).
const char* safetensors_dtype_name(DType t);

}  // namespace qs::io
