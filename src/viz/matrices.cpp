// Colour scales, pooling, and the matrices drawn from attention weights: one head, the
// head mean, rollout (see include/qiusuo/viz/heatmap.h).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "qiusuo/error.h"
#include "qiusuo/viz/heatmap.h"

namespace qs::viz {

ColorScale ColorScale::fit(const std::vector<const Matrix*>& ms, bool log, double floor) {
  double top = 0;
  for (const Matrix* m : ms)
    for (float v : m->v)
      if (std::isfinite(v)) top = std::max(top, double(v));
  ColorScale s;
  s.log = log;
  if (log) {
    QS_CHECK(floor > 0 && std::isfinite(floor), "heatmap: the log scale needs a floor > 0, found {}", floor);
    s.lo = floor;
    s.hi = std::max(top, floor * 10);
  } else {
    s.lo = 0;
    s.hi = top > 0 ? top : 1;
  }
  return s;
}

double ColorScale::position(double v) const {
  if (std::isnan(v)) return 0;
  double p = log ? (std::log10(std::max(v, lo)) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                 : (v - lo) / (hi - lo);
  return std::clamp(p, 0.0, 1.0);
}

namespace {

// "1e-03" -> "1e-3"
std::string short_exp(double v) {
  const int e = int(std::lround(std::log10(v)));
  const double m = v / std::pow(10.0, e);
  return std::fabs(m - 1) < 1e-6 ? fmt::format("1e{}", e) : fmt::format("{:.2g}e{}", m, e);
}

}  // namespace

std::vector<ColorScale::Tick> ColorScale::ticks() const {
  std::vector<Tick> t;
  if (log) {
    t.push_back({lo, 0, "\u2264" + short_exp(lo)});
    for (int e = int(std::floor(std::log10(lo))) + 1; std::pow(10.0, e) <= hi * (1 + 1e-9); ++e) {
      const double v = std::pow(10.0, e);
      if (v <= lo * 1.5) continue;
      t.push_back({v, position(v), v >= 0.01 ? fmt::format("{:g}", v) : short_exp(v)});
    }
    return t;
  }
  const double raw = (hi - lo) / 4, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = mag * (raw / mag < 1.5 ? 1 : raw / mag < 3.5 ? 2 : raw / mag < 7.5 ? 5 : 10);
  for (int k = 0; lo + k * step <= hi * (1 + 1e-9); ++k) {
    const double v = lo + k * step;
    t.push_back({v, position(v), v == 0 ? "0" : fmt::format("{:.3g}", v)});
  }
  return t;
}

Matrix max_pool(const Matrix& m, int64_t max_rows, int64_t max_cols) {
  QS_CHECK(max_rows >= 1 && max_cols >= 1, "max_pool: the target size must be >= 1, found {}x{}", max_rows, max_cols);
  const int64_t fr = (m.rows + max_rows - 1) / max_rows, fc = (m.cols + max_cols - 1) / max_cols;
  if (fr <= 1 && fc <= 1) return m;
  Matrix p;
  p.rows = (m.rows + fr - 1) / fr;
  p.cols = (m.cols + fc - 1) / fc;
  p.v.assign(size_t(p.rows * p.cols), -INFINITY);
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = 0; c < m.cols; ++c) {
      float& d = p.v[size_t((r / fr) * p.cols + c / fc)];
      d = std::max(d, m.at(r, c));
    }
  return p;
}

namespace {

// w as contiguous f32 (no copy when it already is).
Tensor weights_of(const Tensor& w, const char* what) {
  QS_CHECK(w.defined() && w.dim() == 3, "{}: attention weights must be [H, Tq, Tk], found {}", what,
           w.defined() ? fmt::format("{} dims", w.dim()) : std::string("an undefined tensor"));
  return w.to(DType::f32).contiguous();
}

}  // namespace

Matrix head_matrix(const Tensor& w, int64_t h) {
  const Tensor c = weights_of(w, "head_matrix");
  QS_CHECK(h >= 0 && h < w.size(0), "head_matrix: head {} is out of range; the map has {} heads (0..{})", h, w.size(0),
           w.size(0) - 1);
  Matrix m{w.size(1), w.size(2), {}};
  const size_t n = size_t(m.rows * m.cols);
  const float* p = c.data_ptr<float>() + size_t(h) * n;
  m.v.assign(p, p + n);
  return m;
}

Matrix head_mean(const Tensor& w) {
  const Tensor c = weights_of(w, "head_mean");
  const float* p = c.data_ptr<float>();
  const int64_t H = w.size(0);
  Matrix m{w.size(1), w.size(2), {}};
  const size_t n = size_t(m.rows * m.cols);
  m.v.resize(n);
  for (size_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t h = 0; h < H; ++h) s += p[size_t(h) * n + i];
    m.v[i] = float(s / double(H));
  }
  return m;
}

Matrix attention_rollout(const std::vector<Tensor>& layers) {
  QS_CHECK(!layers.empty(), "attention_rollout: no layers given");
  const int64_t T = layers[0].defined() && layers[0].dim() == 3 ? layers[0].size(1) : -1;
  std::vector<double> roll;  // [T, T], the product so far
  for (size_t l = 0; l < layers.size(); ++l) {
    const Tensor& w = layers[l];
    QS_CHECK(w.defined() && w.dim() == 3 && w.size(1) == T && w.size(2) == T && T > 0,
             "attention_rollout: layer {} must be [H, {}, {}] (square, as layer 0), found {}", l, T, T,
             w.defined() ? fmt::format("{}", fmt::join(w.shape(), "x")) : std::string("undefined"));
    const Matrix mean = head_mean(w);
    std::vector<double> a(size_t(T * T));
    for (int64_t i = 0; i < T; ++i) {  // A = 0.5 W + 0.5 I, rows renormalised
      double sum = 0;
      for (int64_t j = 0; j < T; ++j) sum += a[size_t(i * T + j)] = 0.5 * mean.at(i, j) + (i == j ? 0.5 : 0.0);
      for (int64_t j = 0; j < T; ++j) a[size_t(i * T + j)] /= sum;
    }
    if (l == 0) {
      roll = std::move(a);
      continue;
    }
    std::vector<double> next(size_t(T * T), 0.0);  // A_l * roll
    for (int64_t i = 0; i < T; ++i)
      for (int64_t k = 0; k < T; ++k) {
        const double aik = a[size_t(i * T + k)];
        if (aik == 0) continue;
        for (int64_t j = 0; j < T; ++j) next[size_t(i * T + j)] += aik * roll[size_t(k * T + j)];
      }
    roll = std::move(next);
  }
  return Matrix{T, T, std::vector<float>(roll.begin(), roll.end())};
}

}  // namespace qs::viz
