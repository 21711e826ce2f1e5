// Resampling, windowing, patches, augmentation and splits (include/qiusuo/medical/preprocess.h).
#include "qiusuo/medical/preprocess.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "qiusuo/error.h"

namespace qs::medical {

namespace {

// One linear resampling pass along axis `axis` of a [n0, n1, n2] buffer: out has m samples
// along it at source positions p * step.
std::vector<float> pass(const std::vector<float>& in, const std::array<int64_t, 3>& n, int axis, int64_t m,
                        double step) {
  std::array<int64_t, 3> o = n;
  o[size_t(axis)] = m;
  std::vector<int64_t> lo(static_cast<size_t>(m));
  std::vector<float> w(static_cast<size_t>(m));
  const int64_t len = n[size_t(axis)];
  for (int64_t p = 0; p < m; ++p) {
    const double s = std::min(double(p) * step, double(len - 1));
    const int64_t a = std::min<int64_t>(int64_t(std::floor(s)), len - 1);
    lo[size_t(p)] = a, w[size_t(p)] = float(s - double(a));
  }
  std::vector<float> out(size_t(o[0] * o[1] * o[2]));
  const int64_t s0 = n[1] * n[2], s1 = n[2];
  const int64_t stride = axis == 0 ? s0 : axis == 1 ? s1 : 1;
#pragma omp parallel for schedule(static)
  for (int64_t a = 0; a < o[0]; ++a)
    for (int64_t b = 0; b < o[1]; ++b)
      for (int64_t c = 0; c < o[2]; ++c) {
        const int64_t idx[3] = {a, b, c};
        const int64_t p = idx[axis];
        int64_t src[3] = {a, b, c};
        src[axis] = lo[size_t(p)];
        const int64_t at = src[0] * s0 + src[1] * s1 + src[2];
        const float x0 = in[size_t(at)];
        const float x1 = lo[size_t(p)] + 1 < len ? in[size_t(at + stride)] : x0;
        out[size_t((a * o[1] + b) * o[2] + c)] = x0 + (x1 - x0) * w[size_t(p)];
      }
  return out;
}

}  // namespace

Volume resample(const Volume& v, const std::array<double, 3>& spacing) {
  QS_CHECK(v.voxels.defined() && v.voxels.dim() == 3 && v.voxels.dtype() == DType::f32,
           "resample: voxels must be f32 [slices, rows, columns]");
  const std::array<double, 3> old = v.spacing();
  for (size_t a = 0; a < 3; ++a)
    QS_CHECK(spacing[a] > 0 && std::isfinite(spacing[a]) && old[a] > 0, "resample: spacing {} along axis {} (old {})",
             spacing[a], a, old[a]);
  // Axes of the buffer: 0 = k (slices), 1 = j (rows), 2 = i (columns); spacing is (i, j, k).
  std::array<int64_t, 3> n = {v.slices(), v.rows(), v.columns()};
  const std::array<double, 3> sold = {old[2], old[1], old[0]}, snew = {spacing[2], spacing[1], spacing[0]};
  std::array<int64_t, 3> m{};
  double total = 1;
  for (size_t a = 0; a < 3; ++a) {
    m[a] = int64_t(std::floor(double(n[a] - 1) * sold[a] / snew[a] + 1e-9)) + 1;
    total *= double(m[a]);
  }
  QS_CHECK(total <= double(int64_t(1) << 31), "resample: {} x {} x {} voxels is too many", m[0], m[1], m[2]);
  const Tensor x = v.voxels.contiguous();
  std::vector<float> buf(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
  for (int axis = 0; axis < 3; ++axis) {
    buf = pass(buf, n, axis, m[size_t(axis)], snew[size_t(axis)] / sold[size_t(axis)]);
    n[size_t(axis)] = m[size_t(axis)];
  }
  Volume out;
  out.modality = v.modality;
  out.voxels = empty({m[0], m[1], m[2]}, DType::f32);
  std::copy(buf.begin(), buf.end(), out.voxels.data_ptr<float>());
  out.affine = v.affine;
  for (size_t c = 0; c < 3; ++c)
    for (size_t r = 0; r < 3; ++r) out.affine[r][c] = v.affine[r][c] * spacing[c] / old[c];
  return out;
}

Tensor window(const Tensor& hu, double lo, double hi) {
  QS_CHECK(hi > lo, "window: hi {} must exceed lo {}", hi, lo);
  const Tensor x = hu.contiguous();
  Tensor out = empty(x.shape(), DType::f32);
  const float* s = x.data_ptr<float>();
  float* d = out.data_ptr<float>();
  const float a = float(lo), inv = float(1.0 / (hi - lo));
  for (int64_t i = 0; i < x.numel(); ++i) d[i] = (std::clamp(s[i], a, float(hi)) - a) * inv;
  return out;
}

Tensor extract_patch(const Volume& v, const std::array<double, 3>& centre, const std::array<int64_t, 3>& size,
                     float fill) {
  QS_CHECK(size[0] > 0 && size[1] > 0 && size[2] > 0, "extract_patch: size {} x {} x {}", size[0], size[1], size[2]);
  const Tensor x = v.voxels.contiguous();
  const int64_t D = x.size(0), H = x.size(1), W = x.size(2);
  // centre is (i, j, k); size is (k, j, i) like the tensor.
  const int64_t k0 = int64_t(std::lround(centre[2])) - size[0] / 2, j0 = int64_t(std::lround(centre[1])) - size[1] / 2,
                i0 = int64_t(std::lround(centre[0])) - size[2] / 2;
  Tensor out = full({size[0], size[1], size[2]}, fill, DType::f32);
  float* d = out.data_ptr<float>();
  const float* s = x.data_ptr<float>();
  for (int64_t k = 0; k < size[0]; ++k) {
    const int64_t sk = k0 + k;
    if (sk < 0 || sk >= D) continue;
    for (int64_t j = 0; j < size[1]; ++j) {
      const int64_t sj = j0 + j;
      if (sj < 0 || sj >= H) continue;
      for (int64_t i = 0; i < size[2]; ++i) {
        const int64_t si = i0 + i;
        if (si >= 0 && si < W) d[(k * size[1] + j) * size[2] + i] = s[(sk * H + sj) * W + si];
      }
    }
  }
  return out;
}

Tensor patch_mm(const Volume& v, const std::array<double, 3>& centre, double size_mm, int64_t voxels) {
  QS_CHECK(size_mm > 0 && voxels >= 1, "patch_mm: size {} mm on {} voxels", size_mm, voxels);
  const std::array<double, 3> sp = v.spacing();
  const double iso = size_mm / double(voxels);
  // Half extents in the volume's voxels (i, j, k), with a margin for the interpolation.
  std::array<int64_t, 3> half{};
  for (size_t a = 0; a < 3; ++a) half[a] = int64_t(std::ceil(size_mm / 2 / sp[a])) + 2;
  const std::array<double, 3> c0 = {std::round(centre[0]), std::round(centre[1]), std::round(centre[2])};
  Volume crop;
  crop.voxels = extract_patch(v, c0, {2 * half[2] + 1, 2 * half[1] + 1, 2 * half[0] + 1});
  // extract_patch starts at round(c) - size / 2 along each axis.
  const std::array<double, 3> first = {c0[0] - double(half[0]), c0[1] - double(half[1]), c0[2] - double(half[2])};
  crop.affine = v.affine;
  const std::array<double, 3> o = v.world(first[0], first[1], first[2]);
  for (size_t r = 0; r < 3; ++r) crop.affine[r][3] = o[r];
  const Volume iso_v = resample(crop, {iso, iso, iso});
  // The centre in the resampled grid: the same axes, scaled.
  const std::array<double, 3> c = {(centre[0] - first[0]) * sp[0] / iso, (centre[1] - first[1]) * sp[1] / iso,
                                   (centre[2] - first[2]) * sp[2] / iso};
  return extract_patch(iso_v, c, {voxels, voxels, voxels});
}

Tensor augment(const Tensor& patch, Generator& gen, const AugmentOptions& opt) {
  QS_CHECK(patch.defined() && patch.dim() == 3 && patch.dtype() == DType::f32, "augment: expected an f32 [D, H, W] patch");
  const int64_t D = patch.size(0), H = patch.size(1), W = patch.size(2);
  QS_CHECK(!opt.rotate90 || H == W, "augment: 90-degree rotations need a square axial plane, got {} x {}", H, W);
  const Tensor x = patch.contiguous();
  const float* s = x.data_ptr<float>();
  bool flip[3] = {false, false, false};
  if (opt.flips)
    for (bool& f : flip) f = gen.next_double() < 0.5;
  const int rot = opt.rotate90 ? int(gen.next_u64() % 4) : 0;
  int64_t shift[3] = {0, 0, 0};
  if (opt.shift > 0)
    for (int64_t& t : shift) t = int64_t(gen.next_u64() % uint64_t(2 * opt.shift + 1)) - opt.shift;
  const double scale = 1 + (2 * gen.next_double() - 1) * opt.intensity;
  const double offset = (2 * gen.next_double() - 1) * opt.intensity;
  Tensor out = empty({D, H, W}, DType::f32);
  float* d = out.data_ptr<float>();
  for (int64_t k = 0; k < D; ++k)
    for (int64_t j = 0; j < H; ++j)
      for (int64_t i = 0; i < W; ++i) {
        // Output voxel (k, j, i) reads the input at the inverse transform: shift, then
        // rotation in the (j, i) plane, then flips; clamped to the edge.
        int64_t a = std::clamp<int64_t>(k - shift[0], 0, D - 1), b = std::clamp<int64_t>(j - shift[1], 0, H - 1),
                c = std::clamp<int64_t>(i - shift[2], 0, W - 1);
        for (int r = 0; r < rot; ++r) {
          const int64_t nb = c, nc = W - 1 - b;  // a quarter turn
          b = nb, c = nc;
        }
        if (flip[0]) a = D - 1 - a;
        if (flip[1]) b = H - 1 - b;
        if (flip[2]) c = W - 1 - c;
        double vox = s[(a * H + b) * W + c] * scale + offset;
        if (opt.noise > 0) vox += opt.noise * gen.next_normal();
        d[(k * H + j) * W + i] = float(vox);
      }
  return out;
}

std::map<std::string, int> split_patients(const std::vector<std::string>& patient_ids,
                                          const std::vector<double>& fractions, uint64_t seed) {
  QS_CHECK(!fractions.empty(), "split_patients: no fractions");
  double sum = 0;
  for (double f : fractions) {
    QS_CHECK(f >= 0 && std::isfinite(f), "split_patients: fraction {} is negative", f);
    sum += f;
  }
  QS_CHECK(sum <= 1 + 1e-9, "split_patients: fractions sum to {}, over 1", sum);
  const std::set<std::string> distinct(patient_ids.begin(), patient_ids.end());
  std::vector<std::string> ids(distinct.begin(), distinct.end());
  Generator g(seed);
  for (size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[size_t(g.next_u64() % i)]);
  std::map<std::string, int> out;
  size_t at = 0;
  for (size_t s = 0; s < fractions.size(); ++s) {
    const size_t take = s + 1 == fractions.size() ? ids.size() - at
                                                  : std::min(ids.size() - at, size_t(std::llround(fractions[s] * double(ids.size()))));
    for (size_t t = 0; t < take; ++t) out[ids[at++]] = int(s);
  }
  return out;
}

}  // namespace qs::medical
