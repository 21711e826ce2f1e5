// Synthetic chest CT with nodules and their readers (include/qiusuo/medical/synth.h).
#include "qiusuo/medical/synth.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "qiusuo/error.h"
#include "qiusuo/medical/dicom.h"
#include "qiusuo/medical/nifti.h"

namespace qs::medical {

namespace {

constexpr double kPi = 3.14159265358979323846;

struct Grid {
  int64_t D, H, W;
  double px, dz;
  std::vector<float> hu;
  float& at(int64_t k, int64_t j, int64_t i) { return hu[size_t((k * H + j) * W + i)]; }
  // Millimetres from the volume's centre.
  double x(int64_t i) const { return (double(i) - double(W - 1) / 2) * px; }
  double y(int64_t j) const { return (double(j) - double(H - 1) / 2) * px; }
  double z(int64_t k) const { return (double(k) - double(D - 1) / 2) * dz; }
};

double uniform(Generator& g, double a, double b) { return a + (b - a) * g.next_double(); }

// Smooth noise in [-1, 1]-ish: white noise box-blurred three times along each axis.
std::vector<float> smooth_noise(const Grid& gr, Generator& g, int radius) {
  std::vector<float> a(gr.hu.size());
  for (float& v : a) v = float(g.next_normal());
  const int64_t n[3] = {gr.D, gr.H, gr.W}, stride[3] = {gr.H * gr.W, gr.W, 1};
  std::vector<float> b(a.size());
  for (int pass = 0; pass < 2; ++pass)
    for (int axis = 0; axis < 3; ++axis) {
      const int r = axis == 0 ? std::max(1, radius / 2) : radius;
      for (int64_t idx = 0; idx < int64_t(a.size()); ++idx) {
        const int64_t pos = (idx / stride[axis]) % n[axis];
        double s = 0;
        int c = 0;
        for (int t = -r; t <= r; ++t) {
          const int64_t p = pos + t;
          if (p < 0 || p >= n[axis]) continue;
          s += a[size_t(idx + t * stride[axis])], ++c;
        }
        b[size_t(idx)] = float(s / c);
      }
      a.swap(b);
    }
  double m2 = 0;
  for (float v : a) m2 += double(v) * v;
  const float scale = float(1.0 / std::sqrt(m2 / double(a.size()) + 1e-12));
  for (float& v : a) v *= scale;
  return a;
}

struct Lung {
  double cx, cy, ax, ay, az;  // centre (mm) and semi-axes
  bool inside(double x, double y, double z, double margin = 0) const {
    const double u = (x - cx) / (ax - margin), v = (y - cy) / (ay - margin), w = z / (az - margin);
    return u * u + v * v + w * w < 1;
  }
};

// The nodule's shape: inside weight in [0, 1] at offset d (mm) from its centre.
struct Shape {
  double R, lob, margin;
  double phase[3];
  std::vector<std::array<double, 3>> spikes;  // unit directions
  std::vector<double> spike_len;              // mm beyond the surface
  double radius(const std::array<double, 3>& u) const {
    const double th = std::acos(std::clamp(u[2], -1.0, 1.0)), ph = std::atan2(u[1], u[0]);
    return R * (1 + lob * (0.6 * std::sin(3 * ph + phase[0]) * std::sin(th) + 0.4 * std::cos(2 * th + phase[1]) +
                           0.3 * std::sin(5 * ph + phase[2])));
  }
  double weight(const std::array<double, 3>& d) const {
    const double dist = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    const std::array<double, 3> u = dist > 1e-9 ? std::array<double, 3>{d[0] / dist, d[1] / dist, d[2] / dist}
                                                : std::array<double, 3>{0, 0, 1};
    double w = 1 / (1 + std::exp(-(radius(u) - dist) / margin));
    for (size_t s = 0; s < spikes.size(); ++s) {
      const double t = d[0] * spikes[s][0] + d[1] * spikes[s][1] + d[2] * spikes[s][2];
      const double len = R + spike_len[s];
      if (t < 0 || t > len) continue;
      const double p2 = dist * dist - t * t, width = 0.25 + 0.8 * (1 - t / len);
      if (p2 < width * width) w = std::max(w, 0.85);
    }
    return w;
  }
  double extent() const {
    double L = 0;
    for (double l : spike_len) L = std::max(L, l);
    return R * (1 + lob) + L + 3 * margin + 1;
  }
};

}  // namespace

SynthCase synth_case(int index, const SynthOptions& o) {
  QS_CHECK(o.slices >= 8 && o.rows >= 32 && o.columns >= 32 && o.pixel_mm > 0 && o.slice_mm > 0,
           "synth: a volume of at least 8 x 32 x 32 voxels with positive spacing");
  QS_CHECK(o.min_nodules >= 1 && o.max_nodules >= o.min_nodules && o.readers >= 1 && o.readers <= 4,
           "synth: 1 <= min_nodules <= max_nodules and 1 to 4 readers");
  Generator g(o.seed * 0x9E3779B97F4A7C15ull + uint64_t(index) * 7919u + 17u);
  Grid gr{o.slices, o.rows, o.columns, o.pixel_mm, o.slice_mm, {}};
  gr.hu.assign(size_t(gr.D * gr.H * gr.W), -1000.0f);
  const double bx = 0.47 * double(gr.W) * gr.px, by = 0.40 * double(gr.H) * gr.px;
  const double depth = 0.5 * double(gr.D) * gr.dz;
  const std::array<Lung, 2> lungs = {Lung{-0.21 * double(gr.W) * gr.px, -0.02 * by, 0.17 * double(gr.W) * gr.px,
                                          0.62 * by, 1.15 * depth},
                                     Lung{0.21 * double(gr.W) * gr.px, -0.02 * by, 0.16 * double(gr.W) * gr.px,
                                          0.60 * by, 1.15 * depth}};
  const std::vector<float> texture = smooth_noise(gr, g, 2);
  const double rib_phase = uniform(g, 0, 2 * kPi);
  for (int64_t k = 0; k < gr.D; ++k)
    for (int64_t j = 0; j < gr.H; ++j)
      for (int64_t i = 0; i < gr.W; ++i) {
        const double x = gr.x(i), y = gr.y(j), z = gr.z(k);
        const double e = (x / bx) * (x / bx) + (y / by) * (y / by);
        float& v = gr.at(k, j, i);
        if (e >= 1) continue;                     // air
        v = e > 0.85 ? -100.0f : 40.0f;           // subcutaneous fat, then muscle and mediastinum
        const double th = std::atan2(y, x);
        if (e > 0.70 && e < 0.78 && std::cos(9 * th + 0.35 * z + rib_phase) > 0.55) v = 650.0f;  // ribs
        for (const Lung& l : lungs)
          if (l.inside(x, y, z)) v = float(-850 + 25 * texture[size_t((k * gr.H + j) * gr.W + i)]);
      }
  // Vessels: random walks from the hilum outwards, thinning as they go.
  for (const Lung& l : lungs)
    for (int v = 0; v < 10; ++v) {
      double p[3] = {l.cx * 0.55, l.cy + uniform(g, -0.2, 0.2) * l.ay, uniform(g, -0.6, 0.6) * depth};
      double dir[3] = {l.cx > 0 ? 1.0 : -1.0, uniform(g, -0.8, 0.8), uniform(g, -0.5, 0.5)};
      double r = uniform(g, 1.2, 2.2);
      for (int step = 0; step < 80 && r > 0.35; ++step) {
        const double n = std::sqrt(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]);
        for (double& d : dir) d /= n;
        for (int a = 0; a < 3; ++a) p[a] += dir[a] * 0.8;
        for (double& d : dir) d += 0.25 * g.next_normal();
        r *= 0.985;
        if (!l.inside(p[0], p[1], p[2], -2)) break;
        const int64_t ci = int64_t(std::lround(p[0] / gr.px + double(gr.W - 1) / 2)),
                      cj = int64_t(std::lround(p[1] / gr.px + double(gr.H - 1) / 2)),
                      ck = int64_t(std::lround(p[2] / gr.dz + double(gr.D - 1) / 2));
        const int64_t ri = int64_t(std::ceil(r / gr.px)) + 1, rk = int64_t(std::ceil(r / gr.dz)) + 1;
        for (int64_t k = std::max<int64_t>(0, ck - rk); k <= std::min(gr.D - 1, ck + rk); ++k)
          for (int64_t j = std::max<int64_t>(0, cj - ri); j <= std::min(gr.H - 1, cj + ri); ++j)
            for (int64_t i = std::max<int64_t>(0, ci - ri); i <= std::min(gr.W - 1, ci + ri); ++i) {
              const double dx = gr.x(i) - p[0], dy = gr.y(j) - p[1], dzz = gr.z(k) - p[2];
              const double d = std::sqrt(dx * dx + dy * dy + dzz * dzz);
              float& hv = gr.at(k, j, i);
              if (d < r && hv < -500) hv = float(std::max<double>(hv, 40 - 300 * std::max(0.0, d - r + 0.5)));
            }
      }
    }

  SynthCase c;
  c.patient_id = fmt::format("LIDC-SYN-{:04}", index + 1);
  const int n_nod = o.min_nodules + int(g.next_u64() % uint64_t(o.max_nodules - o.min_nodules + 1));
  std::vector<Shape> shapes;
  for (int n = 0; n < n_nod; ++n) {
    SynthNodule nd;
    nd.z = g.next_double();
    const double z = nd.z;
    nd.diameter_mm = std::clamp(4.0 + 12 * z + 1.5 * g.next_normal(), 4.0, 20.0);
    nd.spiculation = z > 0.5 ? uniform(g, 0.2, 1.0) * (z - 0.4) * 2 : 0;
    nd.lobulation = std::clamp(0.02 + 0.22 * z + 0.04 * g.next_normal(), 0.0, 0.35);
    nd.margin_mm = 0.25 + 1.1 * z * uniform(g, 0.6, 1.2);
    const double kind = g.next_double();
    if (z < 0.3 && kind < 0.4) nd.density_hu = uniform(g, 250, 500);         // calcified
    else if (z > 0.4 && kind < 0.25) nd.density_hu = uniform(g, -550, -350);  // ground glass / part solid
    else nd.density_hu = uniform(g, -10, 60);                                 // solid
    Shape s{nd.diameter_mm / 2, nd.lobulation, nd.margin_mm, {uniform(g, 0, 6), uniform(g, 0, 6), uniform(g, 0, 6)}, {}, {}};
    const int n_spikes = nd.spiculation > 0 ? 6 + int(10 * nd.spiculation) : 0;
    for (int t = 0; t < n_spikes; ++t) {
      double u[3] = {g.next_normal(), g.next_normal(), g.next_normal()};
      const double len = std::sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2]);
      s.spikes.push_back({u[0] / len, u[1] / len, u[2] / len});
      s.spike_len.push_back(s.R * nd.spiculation * uniform(g, 0.5, 1.4));
    }
    // A centre inside a lung, the nodule's extent away from its wall, apart from the others.
    for (int attempt = 0;; ++attempt) {
      const Lung& l = lungs[g.next_u64() % 2];
      const double px = l.cx + uniform(g, -1, 1) * l.ax, py = l.cy + uniform(g, -1, 1) * l.ay,
                   pz = uniform(g, -1, 1) * std::min(l.az, depth);
      const double keep = std::min(s.R + 2, 0.45 * std::min(l.ax, l.ay));
      bool ok = l.inside(px, py, pz, keep) && std::fabs(pz) < depth - s.R - 1;
      for (const SynthNodule& other : c.nodules) {
        const double ox = (other.centre[0] - double(gr.W - 1) / 2) * gr.px - px,
                     oy = (other.centre[1] - double(gr.H - 1) / 2) * gr.px - py,
                     oz = (other.centre[2] - double(gr.D - 1) / 2) * gr.dz - pz;
        ok = ok && std::sqrt(ox * ox + oy * oy + oz * oz) > other.diameter_mm / 2 + s.R + 12;
      }
      if (ok || attempt > 500) {
        nd.centre = {px / gr.px + double(gr.W - 1) / 2, py / gr.px + double(gr.H - 1) / 2, pz / gr.dz + double(gr.D - 1) / 2};
        break;
      }
      if (attempt % 100 == 99) s.R *= 0.9, nd.diameter_mm *= 0.9;  // a small lung: shrink to fit
    }
    // Paint.
    const double ext = s.extent();
    const int64_t ci = int64_t(std::lround(nd.centre[0])), cj = int64_t(std::lround(nd.centre[1])),
                  ck = int64_t(std::lround(nd.centre[2]));
    const int64_t ri = int64_t(std::ceil(ext / gr.px)), rk = int64_t(std::ceil(ext / gr.dz));
    for (int64_t k = std::max<int64_t>(0, ck - rk); k <= std::min(gr.D - 1, ck + rk); ++k)
      for (int64_t j = std::max<int64_t>(0, cj - ri); j <= std::min(gr.H - 1, cj + ri); ++j)
        for (int64_t i = std::max<int64_t>(0, ci - ri); i <= std::min(gr.W - 1, ci + ri); ++i) {
          const std::array<double, 3> d = {(double(i) - nd.centre[0]) * gr.px, (double(j) - nd.centre[1]) * gr.px,
                                           (double(k) - nd.centre[2]) * gr.dz};
          const double w = s.weight(d);
          if (w < 0.01) continue;
          float& hv = gr.at(k, j, i);
          hv = float(double(hv) * (1 - w) + nd.density_hu * w);
        }
    c.nodules.push_back(nd);
    shapes.push_back(s);
  }
  for (float& v : gr.hu) v = float(std::clamp(double(v) + o.noise_hu * g.next_normal(), -1024.0, 3000.0));

  // Readers: each marks a nodule with probability 0.9 (someone always does), outlines the
  // boundary of its half-weight mask on every slice it reaches, and rates it.
  c.read.sessions = o.readers;
  for (size_t n = 0; n < c.nodules.size(); ++n) {
    const SynthNodule& nd = c.nodules[n];
    std::vector<int> who;
    for (int r = 0; r < o.readers; ++r)
      if (g.next_double() < 0.9) who.push_back(r);
    if (who.empty()) who.push_back(int(g.next_u64() % uint64_t(o.readers)));
    const double ext = shapes[n].extent();
    const int64_t ri = int64_t(std::ceil(ext / gr.px)) + 1, rk = int64_t(std::ceil(ext / gr.dz)) + 1;
    const int64_t ci = int64_t(std::lround(nd.centre[0])), cj = int64_t(std::lround(nd.centre[1])),
                  ck = int64_t(std::lround(nd.centre[2]));
    for (int r : who) {
      const double level = uniform(g, 0.4, 0.6);  // where this reader draws the edge
      auto inside = [&](int64_t k, int64_t j, int64_t i) {
        if (k < 0 || j < 0 || i < 0 || k >= gr.D || j >= gr.H || i >= gr.W) return false;
        return shapes[n].weight({(double(i) - nd.centre[0]) * gr.px, (double(j) - nd.centre[1]) * gr.px,
                                 (double(k) - nd.centre[2]) * gr.dz}) >= level;
      };
      LidcAnnotation a;
      a.session = r, a.reader = fmt::format("synthetic-reader-{}", r + 1);
      a.nodule_id = fmt::format("Nodule {}", n + 1);
      a.has_characteristics = true;
      auto rate = [&](double x) { return int(std::clamp(std::lround(1 + 4 * x + 0.5 * g.next_normal()), 1L, 5L)); };
      a.c.malignancy = rate(nd.z);
      a.c.spiculation = rate(std::min(1.0, nd.spiculation));
      a.c.lobulation = rate(std::min(1.0, nd.lobulation / 0.3));
      a.c.margin = 6 - rate(std::min(1.0, nd.margin_mm / 1.4));  // 5: sharp
      a.c.sphericity = 6 - rate(std::min(1.0, nd.lobulation / 0.3));
      a.c.subtlety = rate(std::min(1.0, nd.diameter_mm / 20));
      a.c.texture = nd.density_hu < -300 ? 2 : 5;
      a.c.calcification = nd.density_hu > 200 ? 3 : 6;
      a.c.internal_structure = 1;
      for (int64_t k = ck - rk; k <= ck + rk; ++k) {
        LidcRoi roi;
        for (int64_t j = cj - ri; j <= cj + ri; ++j)
          for (int64_t i = ci - ri; i <= ci + ri; ++i)
            if (inside(k, j, i) &&
                (!inside(k, j - 1, i) || !inside(k, j + 1, i) || !inside(k, j, i - 1) || !inside(k, j, i + 1)))
              roi.points.push_back({double(i), double(j)});
        if (roi.points.empty()) continue;
        roi.sop_uid = std::to_string(k);  // the slice, until the series has UIDs
        a.rois.push_back(std::move(roi));
      }
      if (!a.rois.empty()) c.read.annotations.push_back(std::move(a));
    }
  }
  std::stable_sort(c.read.annotations.begin(), c.read.annotations.end(),
                   [](const LidcAnnotation& x, const LidcAnnotation& y) { return x.session < y.session; });

  Volume& v = c.volume;
  v.modality = "CT";
  v.voxels = empty({gr.D, gr.H, gr.W}, DType::f32);
  std::copy(gr.hu.begin(), gr.hu.end(), v.voxels.data_ptr<float>());
  // DICOM's usual axial frame: i towards the patient's left, j posterior, k superior (LPS),
  // here in RAS; the table position puts the scan around z = -150 mm.
  v.affine = {{{-gr.px, 0, 0, double(gr.W - 1) / 2 * gr.px},
               {0, -gr.px, 0, double(gr.H - 1) / 2 * gr.px},
               {0, 0, gr.dz, -150 - double(gr.D - 1) / 2 * gr.dz},
               {0, 0, 0, 1}}};
  return c;
}

SynthSummary write_synth_dataset(const std::string& dir, int cases, const SynthOptions& o,
                                 const std::string& transfer_syntax) {
  namespace fs = std::filesystem;
  QS_CHECK(cases >= 1, "synth: at least one case, got {}", cases);
  fs::create_directories(fs::path(dir) / "nifti");
  SynthSummary sum;
  nlohmann::json truth = nlohmann::json::array();
  for (int i = 0; i < cases; ++i) {
    SynthCase c = synth_case(i, o);
    const std::string tag = fmt::format("{:04}", i + 1);
    const std::string series_dir =
        (fs::path(dir) / c.patient_id / ("01-01-2000-SYN-" + tag) / ("3000" + tag + ".000000-SYN-" + tag)).string();
    DicomWriteOptions w;
    w.patient_id = c.patient_id, w.uid_seed = o.seed * 100000 + uint64_t(i) + 1, w.transfer_syntax = transfer_syntax;
    w.series_description = "qiusuo synthetic chest CT";
    const DicomSeries s = write_dicom_series(series_dir, c.volume, w);
    c.read.series_uid = s.series_uid, c.read.study_uid = s.study_uid;
    for (LidcAnnotation& a : c.read.annotations)
      for (LidcRoi& r : a.rois) {
        const int64_t k = std::stoll(r.sop_uid);
        r.sop_uid = s.sop_uids[size_t(k)];
        r.z = c.volume.world(0, 0, double(k))[2];
      }
    write_lidc_xml(series_dir + "/069.xml", c.read);
    write_nifti((fs::path(dir) / "nifti" / (c.patient_id + ".nii.gz")).string(), c.volume);
    nlohmann::json nods = nlohmann::json::array();
    for (size_t n = 0; n < c.nodules.size(); ++n) {
      const SynthNodule& nd = c.nodules[n];
      // The readers' ratings of this nodule, labelled by the same rule as the real data's.
      LidcNodule rated;
      for (const LidcAnnotation& a : c.read.annotations)
        if (a.nodule_id == fmt::format("Nodule {}", n + 1)) rated.malignancy.push_back(a.c.malignancy);
      for (int r : rated.malignancy) rated.mean_malignancy += r;
      rated.mean_malignancy /= double(std::max<size_t>(1, rated.malignancy.size()));
      const std::vector<int>& ratings = rated.malignancy;
      const int y = label(rated);
      ++sum.nodules;
      (y == 1 ? sum.malignant : y == 0 ? sum.benign : sum.excluded)++;
      nods.push_back({{"centre_voxel", nd.centre}, {"diameter_mm", nd.diameter_mm}, {"latent_malignancy", nd.z},
                      {"spiculation", nd.spiculation}, {"lobulation", nd.lobulation}, {"margin_mm", nd.margin_mm},
                      {"density_hu", nd.density_hu}, {"ratings", ratings}, {"label", y}});
    }
    truth.push_back({{"patient_id", c.patient_id}, {"series_dir", fs::relative(series_dir, dir).string()},
                     {"series_uid", s.series_uid}, {"nodules", nods}});
    ++sum.cases;
  }
  io::write_file_atomic((fs::path(dir) / "truth.json").string(), truth.dump(1) + "\n");
  return sum;
}

}  // namespace qs::medical
