#include "kernels/spatial.h"

#include <cmath>

namespace qs::ops {

bool is_channels_last(const Tensor& x) {
  if (x.dim() < 3) return false;
  int64_t expect = 1;
  auto next = [&](int64_t d) {
    bool ok = x.size(d) == 1 || x.stride(d) == expect;
    expect *= x.size(d);
    return ok;
  };
  bool ok = next(1);
  for (int64_t d = x.dim() - 1; d >= 2; --d) ok = next(d) && ok;
  return next(0) && ok;
}

std::vector<int64_t> channels_last_layout(int64_t rank) {
  std::vector<int64_t> l{0};
  for (int64_t d = 2; d < rank; ++d) l.push_back(d);
  l.push_back(1);
  return l;
}

Spatial spatial_of(const Shape& x, const char* op, int min_sp, int max_sp) {
  int nsp = int(x.size()) - 2;
  QS_CHECK(nsp >= min_sp && nsp <= max_sp, "{}: expected an input [N, C, spatial...] with {} to {} spatial dims, got {}",
           op, min_sp, max_sp, shape_str(x));
  Spatial g;
  g.nsp = nsp;
  g.N = x[0];
  g.C = x[1];
  for (int i = 0; i < nsp; ++i) g.in[size_t(3 - nsp + i)] = x[size_t(2 + i)];
  return g;
}

Dims3 spatial_attr(const Attrs& a, const char* name, int nsp, int64_t dflt, int64_t lo, const char* op) {
  Dims3 d{dflt, dflt, dflt};
  if (!a.has(name)) return d;
  const auto& v = a.ints(name);
  QS_CHECK(v.size() == 1 || int(v.size()) == nsp, "{}: '{}' needs 1 or {} values for {} spatial dims, got {}", op, name,
           nsp, nsp, v.size());
  for (int i = 0; i < nsp; ++i) {
    int64_t x = v.size() == 1 ? v[0] : v[size_t(i)];
    QS_CHECK(x >= lo, "{}: '{}' values must be >= {}, got {}", op, name, lo, x);
    d[size_t(3 - nsp + i)] = x;
  }
  for (int i = 0; i < 3 - nsp; ++i) d[size_t(i)] = name == std::string("padding") ? 0 : 1;
  return d;
}

void window_out(Spatial& g, const char* op) {
  for (size_t i = 0; i < 3; ++i) {
    // Overflow-checked: the sizes may come from a file (a graph's attributes).
    int64_t span = 0, padded = 0;
    const bool overflow = __builtin_mul_overflow(g.dil[i], g.k[i] - 1, &span) || __builtin_add_overflow(span, 1, &span) ||
                          __builtin_mul_overflow(g.pad[i], int64_t(2), &padded) ||
                          __builtin_add_overflow(padded, g.in[i], &padded);
    QS_CHECK(!overflow, "{}: the window ({} with dilation {}) or the padded input ({} + 2 x {}) in spatial dim {} is "
             "too large to compute", op, g.k[i], g.dil[i], g.in[i], g.pad[i], int(i) - (3 - g.nsp));
    QS_CHECK(span <= padded, "{}: the window ({} with dilation {}) is larger than the padded input ({} + 2 x {}) in "
             "spatial dim {}", op, g.k[i], g.dil[i], g.in[i], g.pad[i], int(i) - (3 - g.nsp));
    g.out[i] = (padded - span) / g.stride[i] + 1;
  }
}

Shape spatial_shape(const Spatial& g, int64_t C, bool output) {
  Shape s{g.N, C};
  const Dims3& d = output ? g.out : g.in;
  for (int i = 3 - g.nsp; i < 3; ++i) s.push_back(d[size_t(i)]);
  return s;
}

Spatial conv_spatial(const Shape& x, const Shape& w, const Attrs& a, const char* op) {
  Spatial g = spatial_of(x, op);
  QS_CHECK(w.size() == x.size(), "{}: weight {} must have the rank of the input {} ([O, C / groups, k...])", op,
           shape_str(w), shape_str(x));
  int64_t groups = a.i("groups", 1);
  QS_CHECK(groups >= 1 && g.C % groups == 0 && w[0] % groups == 0,
           "{}: groups = {} must divide the input channels ({}) and the output channels ({})", op, groups, g.C, w[0]);
  QS_CHECK(w[1] * groups == g.C, "{}: the input has {} channels but the weight {} with groups = {} expects {}", op, g.C,
           shape_str(w), groups, w[1] * groups);
  for (int i = 0; i < g.nsp; ++i) g.k[size_t(3 - g.nsp + i)] = w[size_t(2 + i)];
  g.stride = spatial_attr(a, "stride", g.nsp, 1, 1, op);
  g.pad = spatial_attr(a, "padding", g.nsp, 0, 0, op);
  g.dil = spatial_attr(a, "dilation", g.nsp, 1, 1, op);
  window_out(g, op);
  return g;
}

Spatial pool_spatial(const Shape& x, const Attrs& a, const char* op, int min_sp, int max_sp) {
  Spatial g = spatial_of(x, op, min_sp, max_sp);
  QS_CHECK(a.has("kernel"), "{}: the 'kernel' attribute is required", op);
  g.k = spatial_attr(a, "kernel", g.nsp, 1, 1, op);
  g.stride = a.has("stride") && !a.ints("stride").empty() ? spatial_attr(a, "stride", g.nsp, 1, 1, op) : g.k;
  g.pad = spatial_attr(a, "padding", g.nsp, 0, 0, op);
  for (size_t i = 0; i < 3; ++i)
    QS_CHECK(g.pad[i] <= g.k[i] / 2, "{}: padding ({}) must be at most half the kernel ({})", op, g.pad[i], g.k[i]);
  window_out(g, op);
  return g;
}

Spatial adaptive_spatial(const Shape& x, const Attrs& a, const char* op) {
  Spatial g = spatial_of(x, op);
  QS_CHECK(a.has("output_size"), "{}: the 'output_size' attribute is required", op);
  g.out = spatial_attr(a, "output_size", g.nsp, 1, 1, op);
  for (size_t i = 0; i < 3; ++i) QS_CHECK(g.in[i] >= 1, "{}: empty spatial input {}", op, shape_str(x));
  return g;
}

Spatial interp_spatial(const Shape& x, const Attrs& a) {
  Spatial g = spatial_of(x, "interpolate");
  const std::string& mode = a.s("mode");
  const char* linear_modes[] = {"", "linear", "bilinear", "trilinear"};
  QS_CHECK(mode == "nearest" || mode == linear_modes[g.nsp], "interpolate: mode '{}' does not fit an input with {} "
           "spatial dims {} (expected 'nearest' or '{}')", mode, g.nsp, shape_str(x), linear_modes[g.nsp]);
  QS_CHECK(!(mode == "nearest" && a.b("align_corners", false)), "interpolate: align_corners only applies to the "
           "linear modes, not 'nearest'");
  QS_CHECK(a.has("size") && int(a.ints("size").size()) == g.nsp, "interpolate: 'size' needs {} values", g.nsp);
  g.out = spatial_attr(a, "size", g.nsp, 1, 1, "interpolate");
  for (size_t i = 0; i < 3; ++i) QS_CHECK(g.in[i] >= 1, "interpolate: empty spatial input {}", shape_str(x));
  return g;
}

std::vector<Tap> interp_taps(int64_t in, int64_t out, bool nearest, bool align_corners, double scale) {
  std::vector<Tap> t(static_cast<size_t>(out));
  // Source step per output step: 1 / scale when a scale was given, else in / out.
  double step = scale > 0 ? 1.0 / scale : double(in) / double(out);
  for (int64_t o = 0; o < out; ++o) {
    if (nearest) {
      int64_t i = std::min(int64_t(std::floor(double(o) * step)), in - 1);
      t[size_t(o)] = {i, i, 1.0, 0.0};
      continue;
    }
    double src = align_corners ? (out > 1 ? double(o) * double(in - 1) / double(out - 1) : 0.0)
                               : std::max(0.0, (double(o) + 0.5) * step - 0.5);
    int64_t i0 = std::min(int64_t(src), in - 1);
    int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
    double w1 = std::min(src - double(i0), 1.0);
    t[size_t(o)] = {i0, i1, 1.0 - w1, w1};
  }
  return t;
}

std::vector<int64_t> real_dims(const Dims3& d, int nsp) { return std::vector<int64_t>(d.end() - nsp, d.end()); }

}  // namespace qs::ops
