#include "qiusuo/tensor.h"

#include <malloc.h>
#include <omp.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "autograd/autograd.h"
#include "qiusuo/memory.h"
#include "ops/op.h"
#include "tensor/strided.h"

namespace qs {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s)
    QS_CHECK(!__builtin_mul_overflow(n, d, &n), "shape {} has more elements than 64 bits count", shape_str(s));
  return n;
}

namespace {
// Tensors come and go at the same sizes every training step. Keeping freed memory in
// glibc's heap (instead of unmapping and faulting it back in) makes that reuse cheap:
// measured at ~13% of a CNN training step.
void tune_allocator_once() {
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 64 << 20);
    return true;
  }();
  (void)done;
}
// Bytes actually allocated for a request: 64-byte multiples, at least 64.
size_t allocated_size(size_t nbytes) { return nbytes == 0 ? 64 : (nbytes + 63) / 64 * 64; }

std::atomic<int64_t> g_current_bytes{0}, g_peak_bytes{0}, g_allocations{0};

void count_allocation(int64_t bytes) {
  int64_t now = g_current_bytes.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  int64_t peak = g_peak_bytes.load(std::memory_order_relaxed);
  while (now > peak && !g_peak_bytes.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}
}  // namespace

MemoryStats memory_stats() {
  return {g_current_bytes.load(std::memory_order_relaxed), g_peak_bytes.load(std::memory_order_relaxed),
          g_allocations.load(std::memory_order_relaxed)};
}
void reset_peak_memory() { g_peak_bytes.store(g_current_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed); }

Storage::Storage(size_t nbytes, bool zero) : nbytes_(nbytes) {
  tune_allocator_once();
  size_t alloc = allocated_size(nbytes);
  data_ = std::aligned_alloc(64, alloc);
  if (!data_) throw Error(fmt::format("out of memory: could not allocate {} bytes", alloc));
  if (zero) std::memset(data_, 0, alloc);
  count_allocation(int64_t(alloc));
}
Storage::~Storage() {
  std::free(data_);
  g_current_bytes.fetch_sub(int64_t(allocated_size(nbytes_)), std::memory_order_relaxed);
}

TensorImpl::TensorImpl() = default;
TensorImpl::~TensorImpl() = default;

int64_t Tensor::size(int64_t d) const {
  int64_t n = dim();
  if (d < 0) d += n;
  QS_CHECK(d >= 0 && d < n, "dimension {} out of range for a tensor of shape {}", d, shape_str(shape()));
  return impl_->shape[d];
}
int64_t Tensor::stride(int64_t d) const {
  int64_t n = dim();
  if (d < 0) d += n;
  QS_CHECK(d >= 0 && d < n, "dimension {} out of range for a tensor of shape {}", d, shape_str(shape()));
  return impl_->strides[d];
}
int64_t Tensor::numel() const { return shape_numel(checked().shape); }
void Tensor::throw_undefined() { throw Error("undefined tensor: a required input or value is missing"); }

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (impl_->shape[d] == 1) continue;
    if (impl_->strides[d] != expect) return false;
    expect *= impl_->shape[d];
  }
  return true;
}

void* Tensor::raw_data() const {
  QS_CHECK(defined(), "use of an undefined tensor");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * int64_t(element_size());
}

void Tensor::check_dtype(DType t) const {
  QS_CHECK(defined(), "use of an undefined tensor");
  QS_CHECK(dtype() == t, "data_ptr: tensor has dtype {}, but {} was requested", dtype_name(dtype()),
           dtype_name(t));
}

double Tensor::item() const {
  QS_CHECK(defined(), "item() of an undefined tensor");
  QS_CHECK(numel() == 1, "item() needs a tensor with one element, got shape {}", shape_str(shape()));
  return load_as_double(raw_data(), dtype(), 0);
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> v(static_cast<size_t>(numel()));
  StridedIndex ix(shape(), strides());
  const void* base = raw_data();
  for (int64_t i = 0; i < numel(); ++i) v[size_t(i)] = load_as_double(base, dtype(), ix.offset(i));
  return v;
}

// ---- views: all through the op table so autograd and the dispatch hooks see them
Tensor Tensor::view(const Shape& s) const {
  Shape shape = infer_size(s, numel());
  Shape st;
  QS_CHECK(compute_view_strides(impl_->shape, impl_->strides, shape, st),
           "view {} -> {} is impossible with strides {} (the tensor is not contiguous in the "
           "needed way); hint: use reshape(), which copies when it must",
           shape_str(this->shape()), shape_str(shape), shape_str(strides()));
  return ops::dispatch1(ops::OpKind::view, {*this}, Attrs().set("shape", shape));
}

Tensor Tensor::reshape(const Shape& s) const {
  Shape shape = infer_size(s, numel());
  Shape st;
  if (compute_view_strides(impl_->shape, impl_->strides, shape, st)) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::permute(const Shape& dims) const {
  int64_t n = dim();
  QS_CHECK(int64_t(dims.size()) == n, "permute: {} dims given for a tensor of rank {}", dims.size(), n);
  Shape d(dims);
  std::vector<bool> seen(size_t(n), false);
  for (auto& x : d) {
    if (x < 0) x += n;
    QS_CHECK(x >= 0 && x < n && !seen[size_t(x)], "permute: {} is not a permutation of 0..{}",
             shape_str(dims), n - 1);
    seen[size_t(x)] = true;
  }
  return ops::dispatch1(ops::OpKind::permute, {*this}, Attrs().set("dims", d));
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  int64_t n = dim();
  if (d0 < 0) d0 += n;
  if (d1 < 0) d1 += n;
  QS_CHECK(d0 >= 0 && d0 < n && d1 >= 0 && d1 < n, "transpose({}, {}) out of range for rank {}", d0, d1, n);
  Shape p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
  std::swap(p[size_t(d0)], p[size_t(d1)]);
  return permute(p);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  int64_t n = dim();
  if (d < 0) d += n;
  QS_CHECK(d >= 0 && d < n, "slice: dim {} out of range for shape {}", d, shape_str(shape()));
  QS_CHECK(step > 0, "slice: step must be positive, got {}", step);
  int64_t len = impl_->shape[size_t(d)];
  if (start < 0) start += len;
  if (end < 0) end += len;
  start = std::clamp<int64_t>(start, 0, len);
  end = std::clamp<int64_t>(end, start, len);
  return ops::dispatch1(ops::OpKind::slice, {*this},
                        Attrs().set("dim", d).set("start", start).set("end", end).set("step", step));
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  int64_t n = dim();
  if (d < 0) d += n;
  QS_CHECK(d >= 0 && d < n, "narrow: dim {} out of range for shape {}", d, shape_str(shape()));
  int64_t len = impl_->shape[size_t(d)];
  if (start < 0) start += len;
  QS_CHECK(start >= 0 && length >= 0 && start + length <= len,
           "narrow: [{}, {}) is outside dim {} of size {}", start, start + length, d, len);
  return slice(d, start, start + length, 1);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  int64_t n = dim();
  if (d < 0) d += n;
  QS_CHECK(d >= 0 && d < n, "select: dim {} out of range for shape {}", d, shape_str(shape()));
  int64_t len = impl_->shape[size_t(d)];
  if (index < 0) index += len;
  QS_CHECK(index >= 0 && index < len, "select: index {} out of range for dim {} of size {}", index, d, len);
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& s) const {
  QS_CHECK(int64_t(s.size()) >= dim(), "expand: target {} has fewer dims than {}", shape_str(s),
           shape_str(shape()));
  Shape out(s);
  size_t lead = s.size() - size_t(dim());
  for (size_t i = 0; i < s.size(); ++i) {
    if (i < lead) {
      QS_CHECK(s[i] >= 0, "expand: size -1 not allowed for a new leading dim in {}", shape_str(s));
      continue;
    }
    int64_t have = impl_->shape[i - lead];
    if (s[i] == -1) out[i] = have;
    QS_CHECK(have == out[i] || have == 1, "expand: cannot expand {} to {} (dim {}: {} vs {})",
             shape_str(shape()), shape_str(s), i, have, out[i]);
  }
  if (out == shape()) return *this;
  return ops::dispatch1(ops::OpKind::expand, {*this}, Attrs().set("shape", out));
}

Tensor Tensor::squeeze(int64_t d) const {
  int64_t n = dim();
  if (d < 0) d += n;
  QS_CHECK(d >= 0 && d < n, "squeeze: dim {} out of range for shape {}", d, shape_str(shape()));
  if (impl_->shape[size_t(d)] != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + d);
  return view(s);
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t x : shape())
    if (x != 1) s.push_back(x);
  return view(s);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  int64_t n = dim() + 1;
  if (d < 0) d += n;
  QS_CHECK(d >= 0 && d < n, "unsqueeze: dim {} out of range for rank {}", d, n - 1);
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return view(s);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  int64_t n = dim();
  if (n == 0) return reshape({1});
  if (start < 0) start += n;
  if (end < 0) end += n;
  QS_CHECK(start >= 0 && end < n && start <= end, "flatten({}, {}) out of range for rank {}", start, end, n);
  Shape s(shape().begin(), shape().begin() + start);
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= shape()[size_t(i)];
  s.push_back(m);
  s.insert(s.end(), shape().begin() + end + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return ops::dispatch1(ops::OpKind::copy, {*this});
}

Tensor Tensor::clone() const { return ops::dispatch1(ops::OpKind::copy, {*this}); }

Tensor Tensor::to(DType t) const {
  if (dtype() == t) return *this;
  return ops::dispatch1(ops::OpKind::cast, {*this}, Attrs().set("dtype", int64_t(t)));
}

Tensor& Tensor::copy_(const Tensor& src) {
  QS_CHECK(defined() && src.defined(), "copy_: undefined tensor");
  Tensor s = src.expand(shape());
  strided_copy(*this, s);
  return *this;
}

Tensor& Tensor::fill_(double v) {
  QS_CHECK(defined(), "fill_: undefined tensor");
  strided_fill(*this, v);
  return *this;
}

Tensor Tensor::operator-() const { return ops::dispatch1(ops::OpKind::neg, {*this}); }

// ---- printing
namespace {
void print_rec(std::ostringstream& os, const Tensor& t, int64_t d, int64_t off, int maxn, int indent) {
  const void* base = static_cast<char*>(t.storage()->data());
  if (d == t.dim()) {
    double v = load_as_double(base, t.dtype(), off);
    if (t.is_floating_point())
      os << fmt::format("{:.4g}", v);
    else
      os << int64_t(v);
    return;
  }
  int64_t n = t.shape()[size_t(d)];
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (n > maxn && i == maxn / 2) {
      os << "...";
      i = n - maxn / 2 - 1;
      if (d + 1 < t.dim()) os << ",\n" << std::string(size_t(indent + 1), ' ');
      else os << ", ";
      continue;
    }
    print_rec(os, t, d + 1, off + i * t.strides()[size_t(d)], maxn, indent + 1);
    if (i + 1 < n) {
      if (d + 1 < t.dim()) os << ",\n" << std::string(size_t(indent + 1), ' ');
      else os << ", ";
    }
  }
  os << "]";
}
}  // namespace

std::string Tensor::to_string(int max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  print_rec(os, *this, 0, offset(), max_per_dim, 7);
  os << ", shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype());
  if (requires_grad()) os << ", requires_grad";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

// ---- factories
namespace {
Tensor allocate(const Shape& shape, DType dtype, bool zero) {
  for (int64_t d : shape) QS_CHECK(d >= 0, "negative size in shape {}", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(shape_numel(shape)) * dtype_size(dtype), zero);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}
}  // namespace

Tensor empty(const Shape& shape, DType dtype) { return allocate(shape, dtype, false); }
Tensor zeros(const Shape& shape, DType dtype) { return allocate(shape, dtype, true); }

Tensor full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill_(value);
  return t;
}
Tensor ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }
Tensor scalar_tensor(double value, DType dtype) { return full({}, value, dtype); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype()); }

Tensor arange(double start, double end, double step, DType dtype) {
  QS_CHECK(step != 0, "arange: step must be non-zero");
  int64_t n = int64_t(std::ceil((end - start) / step));
  if (n < 0) n = 0;
  Tensor t = empty({n}, dtype);
  for (int64_t i = 0; i < n; ++i) store_from_double(t.raw_data(), dtype, i, start + double(i) * step);
  return t;
}

Tensor from_vector(const std::vector<double>& data, const Shape& shape, DType dtype) {
  QS_CHECK(int64_t(data.size()) == shape_numel(shape), "from_vector: {} values for shape {} ({} elements)",
           data.size(), shape_str(shape), shape_numel(shape));
  Tensor t = empty(shape, dtype);
  for (size_t i = 0; i < data.size(); ++i) store_from_double(t.raw_data(), dtype, int64_t(i), data[i]);
  return t;
}

Tensor from_blob_copy(const void* data, const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memcpy(t.raw_data(), data, size_t(t.numel()) * dtype_size(dtype));
  return t;
}

// ---- random numbers
namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Generator::manual_seed(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
  has_spare_ = false;
}
uint64_t Generator::next_u64() {
  uint64_t r = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return r;
}
double Generator::next_double() { return double(next_u64() >> 11) * 0x1.0p-53; }
double Generator::next_normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = next_double(), u2 = next_double();
  if (u1 < 1e-300) u1 = 1e-300;
  double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(2 * M_PI * u2);
  has_spare_ = true;
  return r * std::cos(2 * M_PI * u2);
}
std::vector<uint64_t> Generator::state() const {
  uint64_t sp;
  std::memcpy(&sp, &spare_, 8);
  return {s_[0], s_[1], s_[2], s_[3], uint64_t(has_spare_), sp};
}
void Generator::set_state(const std::vector<uint64_t>& st) {
  QS_CHECK(st.size() == 6, "generator state must have 6 words, got {}", st.size());
  for (int i = 0; i < 4; ++i) s_[i] = st[size_t(i)];
  has_spare_ = st[4] != 0;
  std::memcpy(&spare_, &st[5], 8);
}

Generator& default_generator() {
  static Generator g(0x5eed);
  return g;
}
void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

Tensor uniform(const Shape& shape, double low, double high, DType dtype, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(shape, dtype);
  void* p = t.raw_data();
  for (int64_t i = 0; i < t.numel(); ++i) store_from_double(p, dtype, i, low + (high - low) * g.next_double());
  return t;
}
Tensor rand(const Shape& shape, DType dtype, Generator* gen) { return uniform(shape, 0.0, 1.0, dtype, gen); }
Tensor randn(const Shape& shape, DType dtype, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(shape, dtype);
  void* p = t.raw_data();
  for (int64_t i = 0; i < t.numel(); ++i) store_from_double(p, dtype, i, g.next_normal());
  return t;
}
Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype, Generator* gen) {
  QS_CHECK(high > low, "randint: empty range [{}, {})", low, high);
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(shape, dtype);
  uint64_t span = uint64_t(high - low);
  void* p = t.raw_data();
  for (int64_t i = 0; i < t.numel(); ++i) store_from_double(p, dtype, i, double(low + int64_t(g.next_u64() % span)));
  return t;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    QS_CHECK(x == y || x == 1 || y == 1, "shapes {} and {} cannot be broadcast together (dim {}: {} vs {})",
             shape_str(a), shape_str(b), i, x, y);
    out[i] = x == 1 ? y : x;
  }
  return out;
}

void set_num_threads(int n) {
  // libgomp crashes (SIGSEGV) creating tens of thousands of threads; more than 16 per core
  // never helps a CPU kernel.
  const int cap = 16 * std::max(omp_get_num_procs(), 1);
  QS_CHECK(n <= cap, "threads: {} is more than this machine can use ({} cores; at most {} accepted)", n,
           omp_get_num_procs(), cap);
  omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
}
int get_num_threads() { return omp_get_max_threads(); }

}  // namespace qs
