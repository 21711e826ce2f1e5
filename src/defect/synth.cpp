// Synthetic moving-strip inspection sequences (include/qiusuo/defect/synth.h).
#include "qiusuo/defect/synth.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>

#include "qiusuo/defect/dataset.h"
#include "qiusuo/defect/voc.h"
#include "qiusuo/error.h"
#include "qiusuo/metrics/detection.h"
#include "qiusuo/tensor.h"
#include "qiusuo/viz/image.h"

namespace qs::defect {

namespace {

constexpr double kPi = 3.14159265358979323846;

double uniform(Generator& g, double a, double b) { return a + (b - a) * g.next_double(); }
int uniform_int(Generator& g, int a, int b) { return a + int(g.next_u64() % uint64_t(b - a + 1)); }  // [a, b]

// A float raster, row-major.
struct Raster {
  int w = 0, h = 0;
  std::vector<float> v;
  Raster(int w_, int h_, float fill = 0) : w(w_), h(h_), v(size_t(w_) * size_t(h_), fill) {}
  float& at(int x, int y) { return v[size_t(y) * size_t(w) + size_t(x)]; }
  float at(int x, int y) const { return v[size_t(y) * size_t(w) + size_t(x)]; }
  // Adds `a` at (x, y) with bilinear weights (sub-pixel strokes), clipped.
  void splat(double x, double y, float a) {
    const int x0 = int(std::floor(x)), y0 = int(std::floor(y));
    const double fx = x - x0, fy = y - y0;
    const double wts[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
    const int dx[4] = {0, 1, 0, 1}, dy[4] = {0, 0, 1, 1};
    for (int k = 0; k < 4; ++k) {
      const int px = x0 + dx[k], py = y0 + dy[k];
      if (px >= 0 && py >= 0 && px < w && py < h) at(px, py) += float(a * wts[k]);
    }
  }
  // A soft disc of radius r (a Gaussian profile), added with amplitude a.
  void blob(double cx, double cy, double rx, double ry, float a) {
    const int x0 = std::max(0, int(cx - 3 * rx)), x1 = std::min(w - 1, int(cx + 3 * rx) + 1);
    const int y0 = std::max(0, int(cy - 3 * ry)), y1 = std::min(h - 1, int(cy + 3 * ry) + 1);
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) {
        const double dx = (x - cx) / rx, dy = (y - cy) / ry;
        at(x, y) += float(a * std::exp(-0.5 * (dx * dx + dy * dy)));
      }
  }
  // A line from (x0, y0) to (x1, y1), `width` pixels, added with amplitude a.
  void line(double x0, double y0, double x1, double y1, double width, float a) {
    const double len = std::hypot(x1 - x0, y1 - y0);
    const int steps = std::max(1, int(len * 2));
    for (int s = 0; s <= steps; ++s) {
      const double t = double(s) / steps, x = x0 + t * (x1 - x0), y = y0 + t * (y1 - y0);
      for (double o = -(width - 1) / 2; o <= (width - 1) / 2 + 1e-9; o += 0.5)
        splat(x + o * (y1 - y0) / std::max(len, 1e-9), y - o * (x1 - x0) / std::max(len, 1e-9), a / 2);
    }
  }
};

// Smooth noise: a coarse random grid, bilinearly interpolated, in [-1, 1].
Raster value_noise(int w, int h, int cell, Generator& g) {
  const int gw = w / cell + 2, gh = h / cell + 2;
  std::vector<double> grid(size_t(gw * gh));
  for (double& v : grid) v = uniform(g, -1, 1);
  Raster r(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double gx = double(x) / cell, gy = double(y) / cell;
      const int i = int(gx), j = int(gy);
      const double fx = gx - i, fy = gy - j;
      auto G = [&](int a, int b) { return grid[size_t(b * gw + a)]; };
      r.at(x, y) = float((1 - fy) * ((1 - fx) * G(i, j) + fx * G(i + 1, j)) + fy * ((1 - fx) * G(i, j + 1) + fx * G(i + 1, j + 1)));
    }
  return r;
}

// One defect: its pattern (a patch of intensity changes) and where it sits on the strip.
struct Defect {
  int cls = 0;
  int x = 0, y = 0;  // top-left on the strip
  Raster patch{1, 1};
  double phase = 0, period = 4, floor = 0.25;  // contrast over frames: floor .. 1
};

Raster draw_pattern(int cls, Generator& g) {
  const float c = float(uniform(g, 0.13, 0.28));  // contrast (darker: negative)
  switch (cls) {
    case 0: {  // crazing: short cracks joined into a network
      const int w = uniform_int(g, 26, 46), h = uniform_int(g, 26, 46);
      Raster r(w, h);
      double x = uniform(g, 0.3, 0.7) * w, y = uniform(g, 0.3, 0.7) * h;
      for (int k = 0, n = uniform_int(g, 14, 24); k < n; ++k) {
        const double a = uniform(g, 0, 2 * kPi), len = uniform(g, 4, 10);
        double nx = std::clamp(x + len * std::cos(a), 1.0, w - 2.0), ny = std::clamp(y + len * std::sin(a), 1.0, h - 2.0);
        r.line(x, y, nx, ny, 1, -1.8f * c);  // one pixel wide: darker to be seen
        if (g.next_double() < 0.3) nx = uniform(g, 1, w - 2), ny = uniform(g, 1, h - 2);  // a new branch
        x = nx, y = ny;
      }
      return r;
    }
    case 1: {  // inclusion: dark streaks along the rolling direction
      const int w = uniform_int(g, 10, 18), h = uniform_int(g, 28, 56);
      Raster r(w, h);
      for (int k = 0, n = uniform_int(g, 1, 3); k < n; ++k)
        r.blob(uniform(g, 0.3, 0.7) * w, uniform(g, 0.35, 0.65) * h, uniform(g, 1.0, 2.2), uniform(g, 0.18, 0.26) * h,
               -c * 1.3f);
      return r;
    }
    case 2: {  // patches: a smooth irregular blotch
      const int w = uniform_int(g, 24, 50), h = uniform_int(g, 24, 50);
      Raster r(w, h);
      for (int k = 0, n = uniform_int(g, 3, 5); k < n; ++k)
        r.blob(uniform(g, 0.3, 0.7) * w, uniform(g, 0.3, 0.7) * h, uniform(g, 0.12, 0.2) * w, uniform(g, 0.12, 0.2) * h,
               -c * 0.7f);
      return r;
    }
    case 3: {  // pitted surface: small dark pits
      const int w = uniform_int(g, 22, 40), h = uniform_int(g, 22, 40);
      Raster r(w, h);
      for (int k = 0, n = uniform_int(g, 16, 36); k < n; ++k) {
        const double rad = uniform(g, 0.6, 1.4);
        r.blob(uniform(g, 2, w - 3), uniform(g, 2, h - 3), rad, rad, -c * 1.6f);
      }
      return r;
    }
    case 4: {  // rolled-in scale: flakes stretched along the rolling direction
      const int w = uniform_int(g, 26, 46), h = uniform_int(g, 22, 40);
      Raster r(w, h);
      for (int k = 0, n = uniform_int(g, 6, 12); k < n; ++k)
        r.blob(uniform(g, 3, w - 4), uniform(g, 3, h - 4), uniform(g, 1.2, 2.5), uniform(g, 2.5, 5.0), -c);
      return r;
    }
    default: {  // scratches: long thin lines, bright or dark
      const int w = uniform_int(g, 8, 22), h = uniform_int(g, 36, 80);
      Raster r(w, h);
      const float a = (g.next_double() < 0.5 ? 1.2f : -1.2f) * c;
      for (int k = 0, n = uniform_int(g, 1, 2); k < n; ++k)
        r.line(uniform(g, 2, w - 3), 1, uniform(g, 2, w - 3), h - 2, uniform(g, 1, 2), a);
      return r;
    }
  }
}

// The defect's patch on the strip, as a box.
metrics::Box box_of(const Defect& d) { return {double(d.x), double(d.y), double(d.x + d.patch.w), double(d.y + d.patch.h)}; }

}  // namespace

SynthSummary write_synthetic_sequences(const std::string& dir, const SynthOptions& o) {
  QS_CHECK(o.sequences >= 1 && o.sequences <= 100000, "defect synth: sequences must be 1..100000, got {}", o.sequences);
  QS_CHECK(o.frames >= 1 && o.frames <= 1000, "defect synth: frames must be 1..1000, got {}", o.frames);
  QS_CHECK(o.size >= 16 && o.size <= 1024, "defect synth: size must be 16..1024, got {}", o.size);
  QS_CHECK(o.speed >= 0 && o.speed <= o.size, "defect synth: speed must be 0..size ({}), got {}", o.size, o.speed);
  QS_CHECK(o.max_defects >= 1 && o.max_defects <= 32, "defect synth: max_defects must be 1..32, got {}", o.max_defects);
  QS_CHECK(o.format == "png" || o.format == "jpg", "defect synth: format must be png or jpg, got '{}'", o.format);
  const auto& names = neu_det_classes();
  SynthSummary sum;
  sum.per_class.assign(names.size(), 0);
  const int S = o.size, margin = 4, W = S + 2 * margin;
  const int L = S + int(std::ceil(o.speed * (o.frames - 1))) + 2 * margin;  // strip length seen by the sequence
  for (int k = 0; k < o.sequences; ++k) {
    Generator g(o.seed * 0x9E3779B97F4A7C15ull + uint64_t(k) * 7919u + 101u);
    // The strip: level, streaks along the rolling direction (y), mottling, a fixed grain.
    Raster strip(W, L);
    const double level = uniform(g, 0.42, 0.62);
    std::array<double, 4> sa, sf, sp;
    for (int i = 0; i < 4; ++i) sa[size_t(i)] = uniform(g, 0.005, 0.025), sf[size_t(i)] = uniform(g, 0.02, 0.3), sp[size_t(i)] = uniform(g, 0, 2 * kPi);
    const Raster mottle = value_noise(W, L, uniform_int(g, 10, 24), g);
    const double mottle_amp = uniform(g, 0.02, 0.05);
    for (int y = 0; y < L; ++y)
      for (int x = 0; x < W; ++x) {
        double v = level + mottle_amp * mottle.at(x, y) + 0.012 * g.next_normal();
        for (int i = 0; i < 4; ++i) v += sa[size_t(i)] * std::sin(2 * kPi * sf[size_t(i)] * x + sp[size_t(i)]);
        strip.at(x, y) = float(v);
      }
    // Defects, placed without much overlap, where the sequence passes.
    std::vector<Defect> defects;
    const int n_def = uniform_int(g, 1, o.max_defects);
    for (int tries = 0; int(defects.size()) < n_def && tries < 50 * n_def; ++tries) {
      Defect d;
      d.cls = uniform_int(g, 0, int(names.size()) - 1);
      d.patch = draw_pattern(d.cls, g);
      if (d.patch.w > S - 4 || d.patch.h > S - 4) continue;
      d.x = uniform_int(g, margin + 2, margin + S - 2 - d.patch.w);
      d.y = uniform_int(g, 0, L - d.patch.h);
      d.phase = uniform(g, 0, 2 * kPi);
      d.period = uniform(g, 3, 8);
      d.floor = uniform(g, 0.15, 0.5);
      bool clash = false;
      for (const Defect& e : defects)
        clash = clash || metrics::iou(box_of(d), box_of(e), metrics::BoxConvention::continuous) > 0.05;
      if (!clash) defects.push_back(std::move(d));
    }
    const std::string seq_dir = fmt::format("{}/seq_{:04d}", dir, k);
    std::filesystem::create_directories(seq_dir);
    double gain_x = uniform(g, -0.15, 0.15), gain_y = uniform(g, -0.15, 0.15), gain = uniform(g, 0.9, 1.1);
    for (int t = 0; t < o.frames; ++t) {
      // The camera's window: travel plus shake.
      const int jx = uniform_int(g, -2, 2), jy = uniform_int(g, -2, 2);
      const int ox = margin + jx, oy = std::clamp(margin + int(std::lround(o.speed * t)) + jy, 0, L - S);
      Raster f(S, S);
      for (int y = 0; y < S; ++y)
        for (int x = 0; x < S; ++x) f.at(x, y) = strip.at(ox + x, oy + y);
      VocAnnotation ann;
      ann.folder = fmt::format("seq_{:04d}", k);
      ann.filename = fmt::format("frame_{:03d}.{}", t, o.format);
      ann.width = ann.height = S;
      ann.depth = 1;
      for (const Defect& d : defects) {
        const double vis = d.floor + (1 - d.floor) * (0.5 + 0.5 * std::cos(2 * kPi * t / d.period + d.phase));
        for (int y = 0; y < d.patch.h; ++y)
          for (int x = 0; x < d.patch.w; ++x) {
            const int fx = d.x + x - ox, fy = d.y + y - oy;
            if (fx >= 0 && fy >= 0 && fx < S && fy < S) f.at(fx, fy) += float(vis * d.patch.at(x, y));
          }
        // The box in frame pixels (continuous corners), clipped; annotated when >= 40% shows.
        const double x1 = d.x - ox, y1 = d.y - oy, x2 = x1 + d.patch.w, y2 = y1 + d.patch.h;
        const double cx1 = std::max(0.0, x1), cy1 = std::max(0.0, y1), cx2 = std::min(double(S), x2),
                     cy2 = std::min(double(S), y2);
        if (cx2 - cx1 < 4 || cy2 - cy1 < 4) continue;
        if ((cx2 - cx1) * (cy2 - cy1) < 0.4 * d.patch.w * d.patch.h) continue;
        VocObject ob;
        ob.name = names[size_t(d.cls)];
        ob.truncated = cx1 != x1 || cy1 != y1 || cx2 != x2 || cy2 != y2;
        set_voc_box(ob, {cx1, cy1, cx2, cy2});
        ann.objects.push_back(ob);
        ++sum.per_class[size_t(d.cls)];
        ++sum.boxes;
      }
      // Illumination drifting across the frame and over time, motion blur, sensor noise.
      gain_x = std::clamp(gain_x + uniform(g, -0.04, 0.04), -0.25, 0.25);
      gain_y = std::clamp(gain_y + uniform(g, -0.04, 0.04), -0.25, 0.25);
      gain = std::clamp(gain + uniform(g, -0.03, 0.03), 0.8, 1.2);
      if (g.next_double() < 0.3) {  // blur along the travel: a 3-tap box filter in y
        Raster b = f;
        for (int y = 1; y + 1 < S; ++y)
          for (int x = 0; x < S; ++x) b.at(x, y) = (f.at(x, y - 1) + f.at(x, y) + f.at(x, y + 1)) / 3;
        f = b;
      }
      const double sigma = uniform(g, 0.01, 0.03);
      viz::Image img(S, S);
      for (int y = 0; y < S; ++y)
        for (int x = 0; x < S; ++x) {
          const double lit = gain * (1 + gain_x * (double(x) / S - 0.5) + gain_y * (double(y) / S - 0.5));
          const double v = std::clamp(f.at(x, y) * lit + sigma * g.next_normal(), 0.0, 1.0);
          const uint8_t q = uint8_t(std::lround(v * 255));
          img.set(x, y, {q, q, q});
        }
      const std::string stem = fmt::format("{}/frame_{:03d}", seq_dir, t);
      if (o.format == "png")
        viz::write_png(img, stem + ".png");
      else
        viz::write_jpeg(img, stem + ".jpg", 92);
      write_voc(ann, stem + ".xml");
      ++sum.frames;
    }
    ++sum.sequences;
  }
  return sum;
}

}  // namespace qs::defect
