// Geometry shared by convolution, pooling and resampling over 1 to 3 spatial dims.
// Kernels see three spatial dims (D, H, W): a 2-D op has D = 1, a 1-D op D = H = 1,
// so one loop nest serves every rank.
#pragma once
#include <array>

#include "kernels/kernel.h"

namespace qs::ops {

using Dims3 = std::array<int64_t, 3>;

struct Spatial {
  int nsp = 0;          // real spatial dims (1, 2 or 3)
  int64_t N = 0, C = 0; // batch and input channels
  Dims3 in{1, 1, 1}, out{1, 1, 1};
  Dims3 k{1, 1, 1}, stride{1, 1, 1}, pad{0, 0, 0}, dil{1, 1, 1};
  int64_t in_plane() const { return in[0] * in[1] * in[2]; }
  int64_t out_plane() const { return out[0] * out[1] * out[2]; }
  int64_t k_plane() const { return k[0] * k[1] * k[2]; }
};

// x [N, C, spatial...] with rank 3..5 (nsp = rank - 2, checked against `allowed`).
Spatial spatial_of(const Shape& x, const char* op, int min_sp = 1, int max_sp = 3);
// Attribute `name`: nsp values (one value is repeated), `dflt` when absent; all >= lo.
Dims3 spatial_attr(const Attrs& a, const char* name, int nsp, int64_t dflt, int64_t lo, const char* op);
// Output extent of a sliding window: floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1.
// Errors when the window does not fit the padded input.
void window_out(Spatial& g, const char* op);
// [N, C, out...] with the real spatial dims only.
Shape spatial_shape(const Spatial& g, int64_t C, bool output);
// Whether a convolution applies ReLU to its result (attr activation = "relu"; "none" or
// absent: no activation).
inline bool conv_relu(const Attrs& a) { return a.has("activation") && a.s("activation") == "relu"; }
// Convolution geometry from x [N, C, in...] and w [O, C / groups, k...] (attrs stride,
// padding, dilation, groups), with the checks every convolution row shares.
Spatial conv_spatial(const Shape& x, const Shape& w, const Attrs& a, const char* op);
// Pooling geometry from x [N, C, in...] (nsp in [min_sp, max_sp]) and attrs kernel,
// stride (default: kernel), padding (default 0, at most half the kernel, as PyTorch).
Spatial pool_spatial(const Shape& x, const Attrs& a, const char* op, int min_sp, int max_sp);
// Adaptive pooling geometry from x [N, C, in...] and attr output_size.
Spatial adaptive_spatial(const Shape& x, const Attrs& a, const char* op);
// Adaptive pooling window along one dim: [floor(o in / out), ceil((o + 1) in / out)).
inline int64_t adaptive_begin(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
inline int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }
// Interpolation geometry from x [N, C, in...] and attrs mode, size (one per spatial
// dim), align_corners, scale (optional): checks the mode against the rank.
Spatial interp_spatial(const Shape& x, const Attrs& a);
// One output coordinate of interpolate along a dim: input taps i0, i1 with weights w0, w1
// (nearest: i1 = i0, w1 = 0), as PyTorch's upsample kernels compute them.
struct Tap {
  int64_t i0, i1;
  double w0, w1;
};
std::vector<Tap> interp_taps(int64_t in, int64_t out, bool nearest, bool align_corners, double scale);
// fn(p, i, t) for every output position p and kernel tap t whose input position i lies
// inside the input (flat indices within the output, input and kernel planes): the valid
// taps of a convolution window, shared by the reference convolutions and the INT8 ones.
template <class Fn> void for_each_tap(const Spatial& g, Fn&& fn) {
  for (int64_t od = 0; od < g.out[0]; ++od)
    for (int64_t oh = 0; oh < g.out[1]; ++oh)
      for (int64_t ow = 0; ow < g.out[2]; ++ow)
        for (int64_t kd = 0; kd < g.k[0]; ++kd)
          for (int64_t kh = 0; kh < g.k[1]; ++kh)
            for (int64_t kw = 0; kw < g.k[2]; ++kw) {
              int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dil[0];
              int64_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dil[1];
              int64_t iw = ow * g.stride[2] - g.pad[2] + kw * g.dil[2];
              if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1] || iw < 0 || iw >= g.in[2]) continue;
              fn((od * g.out[1] + oh) * g.out[2] + ow, (id * g.in[1] + ih) * g.in[2] + iw, (kd * g.k[1] + kh) * g.k[2] + kw);
            }
}

// Channels-last: the channels are the innermost physical dim ([N, spatial..., C] in
// memory, PyTorch's memory_format=channels_last), i.e. x is the view
// permute(0, 2, ..., 1) of a contiguous [N, spatial..., C] (dims of size 1 may have any stride).
bool is_channels_last(const Tensor& x);
// {0, 2, ..., rank - 1, 1}: the TensorSpec layout of a channels-last output.
std::vector<int64_t> channels_last_layout(int64_t rank);

// A Dims3 back to the nsp real values (for attrs and messages).
std::vector<int64_t> real_dims(const Dims3& d, int nsp);

}  // namespace qs::ops
