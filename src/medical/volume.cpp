// medical::Volume helpers (include/qiusuo/medical/volume.h).
#include "qiusuo/medical/volume.h"

#include <cmath>

namespace qs::medical {

std::array<double, 3> Volume::spacing() const {
  std::array<double, 3> s{};
  for (int c = 0; c < 3; ++c)
    s[size_t(c)] = std::sqrt(affine[0][size_t(c)] * affine[0][size_t(c)] + affine[1][size_t(c)] * affine[1][size_t(c)] +
                             affine[2][size_t(c)] * affine[2][size_t(c)]);
  return s;
}

std::array<double, 3> Volume::world(double i, double j, double k) const {
  std::array<double, 3> w{};
  for (size_t r = 0; r < 3; ++r) w[r] = affine[r][0] * i + affine[r][1] * j + affine[r][2] * k + affine[r][3];
  return w;
}

Affine axis_aligned(const std::array<double, 3>& spacing, const std::array<double, 3>& origin) {
  Affine a{};
  for (size_t r = 0; r < 3; ++r) {
    a[r][r] = spacing[r];
    a[r][3] = origin[r];
  }
  a[3][3] = 1;
  return a;
}

}  // namespace qs::medical
