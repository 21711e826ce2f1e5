// Tensor: a strided view over shared, 64-byte aligned storage, with autograd state.
//
// Contract
// - shape()[d] >= 0; strides are in elements (not bytes) and may be 0 (expand) or any
//   order (transpose/permute); offset() is in elements from the start of storage.
// - Views (view, reshape when possible, transpose, permute, narrow, slice, expand,
//   squeeze, unsqueeze, select) share storage with their base: writing through one is
//   visible through the other. contiguous() copies only when needed.
// - Copying a Tensor object copies the handle, not the data (like torch.Tensor).
// - Every op is differentiable through autograd unless documented otherwise; ops on
//   tensors that do not require grad record nothing.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "qiusuo/dtype.h"
#include "qiusuo/error.h"

namespace qs {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);

// 64-byte aligned, zero-initialised-on-request byte buffer shared by views.
class Storage {
 public:
  explicit Storage(size_t nbytes, bool zero = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
};

namespace autograd {
struct Node;
struct AutogradMeta;
}  // namespace autograd

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::f32;
  std::unique_ptr<autograd::AutogradMeta> autograd;  // null until autograd touches it
  TensorImpl();
  ~TensorImpl();
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- metadata (of an undefined tensor: an Error, not a null dereference; a graph file
  // that leaves out a required input reached shape rules that way, found by fuzz_graph)
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return checked().shape; }
  const Shape& sizes() const { return checked().shape; }
  const Shape& strides() const { return checked().strides; }
  int64_t dim() const { return int64_t(checked().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t offset() const { return checked().offset; }
  int64_t numel() const;
  DType dtype() const { return checked().dtype; }
  size_t element_size() const { return dtype_size(checked().dtype); }
  bool is_contiguous() const;
  bool is_floating_point() const { return is_floating(dtype()); }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  const std::shared_ptr<Storage>& storage() const { return checked().storage; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- raw data (element at offset(); use strides for anything non-contiguous)
  void* raw_data() const;
  template <class T> T* data_ptr() const {
    check_dtype(dtype_of<T>::value);
    return static_cast<T*>(raw_data());
  }
  double item() const;  // a one-element tensor as double
  std::vector<double> to_vector() const;  // all elements in logical (row-major) order
  template <class T> std::vector<T> to_vector_as() const {
    std::vector<double> v = to_vector();
    return std::vector<T>(v.begin(), v.end());
  }

  // ---- views (no copy)
  Tensor view(const Shape& shape) const;     // requires compatible strides; -1 infers one size
  Tensor reshape(const Shape& shape) const;  // view when possible, else a copy
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }  // 2-D only
  Tensor permute(const Shape& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor expand(const Shape& shape) const;          // -1 keeps a size
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;  // all size-1 dims
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor contiguous() const;  // self if already contiguous

  // ---- copies and conversion
  Tensor clone() const;
  Tensor to(DType t) const;  // self if already that dtype; differentiable between float types
  Tensor& copy_(const Tensor& src);  // in place, broadcasting src; not recorded by autograd
  Tensor& fill_(double v);           // in place; not recorded by autograd
  Tensor& zero_() { return fill_(0.0); }

  // ---- autograd
  bool requires_grad() const;
  Tensor& requires_grad_(bool r = true);
  bool is_leaf() const;
  Tensor grad() const;             // undefined until a backward reached it
  void set_grad(const Tensor& g);  // replaces .grad (optimisers, clipping)
  void zero_grad();                // drops .grad
  Tensor detach() const;           // shares storage, no history
  // Gradient of this tensor w.r.t. every leaf that requires grad, accumulated into
  // their .grad. A non-scalar needs an explicit gradient of the same shape.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  // A hook runs when this tensor's gradient has been computed; it may return a
  // replacement gradient (or an undefined Tensor to keep it). Returns a handle id.
  // The gradient of a cast's output (autocast's bf16 copies) comes in the cast's input
  // dtype: the engine does not round it to the copy's dtype only to widen it back.
  int register_hook(std::function<Tensor(const Tensor&)> hook);
  // On a leaf: `hook` runs after a backward has accumulated this tensor's gradient into
  // .grad for the last time in that backward (torch's register_post_accumulate_grad_hook).
  // Data-parallel training starts a bucket's all-reduce from here while backward goes on.
  // Not run by grad(), which accumulates nothing. Returns a handle id.
  int register_post_accumulate_hook(std::function<void(Tensor&)> hook);
  std::shared_ptr<autograd::Node> grad_fn() const;
  int output_nr() const;

  // ---- printing
  std::string to_string(int max_per_dim = 6) const;

  // ---- operators (broadcasting; see ops.h)
  Tensor operator-() const;

 private:
  const TensorImpl& checked() const {
    if (!impl_) [[unlikely]]
      throw_undefined();
    return *impl_;
  }
  [[noreturn]] static void throw_undefined();

  void check_dtype(DType t) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- factories
Tensor empty(const Shape& shape, DType dtype = DType::f32);
Tensor zeros(const Shape& shape, DType dtype = DType::f32);
Tensor ones(const Shape& shape, DType dtype = DType::f32);
Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
Tensor scalar_tensor(double value, DType dtype = DType::f32);  // 0-dim
Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::f32);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);  // contiguous, same shape and dtype
// From host data (copied), row-major.
Tensor from_vector(const std::vector<double>& data, const Shape& shape, DType dtype = DType::f32);
Tensor from_blob_copy(const void* data, const Shape& shape, DType dtype);

// ---- random numbers: one seeded generator per program (and explicit generators)
class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) { manual_seed(seed); }
  void manual_seed(uint64_t seed);
  uint64_t next_u64();   // xoshiro256**
  double next_double();  // uniform [0, 1)
  double next_normal();  // standard normal (Box-Muller, caches the second value)
  // Full state, for checkpoints: 4 words + the cached normal.
  std::vector<uint64_t> state() const;
  void set_state(const std::vector<uint64_t>& st);

 private:
  uint64_t s_[4] = {};
  bool has_spare_ = false;
  double spare_ = 0.0;
};
Generator& default_generator();
void manual_seed(uint64_t seed);

Tensor rand(const Shape& shape, DType dtype = DType::f32, Generator* gen = nullptr);   // U[0,1)
Tensor randn(const Shape& shape, DType dtype = DType::f32, Generator* gen = nullptr);  // N(0,1)
Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype = DType::i64,
               Generator* gen = nullptr);  // uniform integers in [low, high)
Tensor uniform(const Shape& shape, double low, double high, DType dtype = DType::f32,
               Generator* gen = nullptr);

// ---- broadcasting
Shape broadcast_shapes(const Shape& a, const Shape& b);  // throws with both shapes on mismatch

// ---- threads (OpenMP); 0 = all cores; more than 16 per core is an Error
void set_num_threads(int n);
int get_num_threads();

}  // namespace qs
