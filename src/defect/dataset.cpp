// NEU-DET layouts, inspection sequences and their tensors (include/qiusuo/defect/dataset.h).
#include "qiusuo/defect/dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "qiusuo/error.h"
#include "qiusuo/viz/image.h"

namespace qs::defect {

namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return e == ".jpg" || e == ".jpeg" || e == ".png" || e == ".bmp";
}

// The image files of a folder and of its subfolders one level down (NEU-DET's copy puts
// images under a folder per class), by file name and by stem.
struct ImageIndex {
  std::map<std::string, std::string> by_name, by_stem;
  explicit ImageIndex(const fs::path& dir) {
    auto add = [&](const fs::path& p) {
      if (!is_image_file(p)) return;
      by_name.emplace(p.filename().string(), p.string());
      by_stem.emplace(p.stem().string(), p.string());
    };
    if (!fs::is_directory(dir)) return;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file()) add(e.path());
      else if (e.is_directory())
        for (const auto& f : fs::directory_iterator(e.path()))
          if (f.is_regular_file()) add(f.path());
    }
  }
  // <filename>, else the annotation's stem (or <filename> without extension) with any image extension.
  std::string find(const VocAnnotation& a, const fs::path& xml) const {
    if (auto it = by_name.find(a.filename); !a.filename.empty() && it != by_name.end()) return it->second;
    for (const std::string& stem : {xml.stem().string(), fs::path(a.filename).stem().string()})
      if (auto it = by_stem.find(stem); !stem.empty() && it != by_stem.end()) return it->second;
    return "";
  }
};

std::vector<fs::path> xml_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".xml") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

void check_classes(const VocAnnotation& a, const std::string& path) {
  for (const VocObject& o : a.objects)
    if (class_index(o.name) < 0)
      throw IOError(fmt::format("{}: object class '{}' is not one of NEU-DET's six ({})", path, o.name,
                                fmt::join(neu_det_classes(), ", ")));
}

// Every annotation of `ann_dir` with its image from `images`.
void read_folder(const fs::path& ann_dir, const ImageIndex& images, std::vector<DefectImage>& out) {
  for (const fs::path& x : xml_files(ann_dir)) {
    DefectImage d;
    d.annotation = x.string();
    d.voc = read_voc(d.annotation);
    check_classes(d.voc, d.annotation);
    d.image = images.find(d.voc, x);
    if (d.image.empty())
      throw IOError(fmt::format("{}: its image '{}' (or {}.jpg/.png/.bmp) is not in the images folder", d.annotation,
                                d.voc.filename, x.stem().string()));
    out.push_back(std::move(d));
  }
}

}  // namespace

const std::vector<std::string>& neu_det_classes() {
  static const std::vector<std::string> names = {"crazing",        "inclusion",       "patches",
                                                 "pitted_surface", "rolled-in_scale", "scratches"};
  return names;
}

int class_index(const std::string& name) {
  const auto& n = neu_det_classes();
  auto it = std::find(n.begin(), n.end(), name);
  return it == n.end() ? -1 : int(it - n.begin());
}

std::vector<DefectImage> scan_neu_det(const std::string& root_path, const std::string& split) {
  const fs::path root(root_path);
  if (!fs::is_directory(root)) throw IOError(fmt::format("NEU-DET: {} is not a folder", root_path));
  std::vector<DefectImage> out;
  if (split.empty() && fs::is_directory(root / "ANNOTATIONS")) {
    read_folder(root / "ANNOTATIONS", ImageIndex(root / "IMAGES"), out);
    return out;
  }
  std::vector<fs::path> splits;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && fs::is_directory(e.path() / "annotations") &&
        (split.empty() || e.path().filename() == split))
      splits.push_back(e.path());
  std::sort(splits.begin(), splits.end());
  if (splits.empty())
    throw IOError(fmt::format("NEU-DET: {} holds neither ANNOTATIONS/ + IMAGES/ nor {}/annotations/ + images/",
                              root_path, split.empty() ? "<split>" : split));
  for (const fs::path& s : splits) read_folder(s / "annotations", ImageIndex(s / "images"), out);
  return out;
}

std::vector<DefectSequence> scan_sequences(const std::string& root_path) {
  const fs::path root(root_path);
  if (!fs::is_directory(root)) throw IOError(fmt::format("sequences: {} is not a folder", root_path));
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  std::vector<DefectSequence> out;
  for (const fs::path& d : dirs) {
    DefectSequence s;
    s.name = d.filename().string();
    read_folder(d, ImageIndex(d), s.frames);
    if (s.frames.empty()) continue;
    for (const DefectImage& f : s.frames)
      if (f.voc.width != s.frames[0].voc.width || f.voc.height != s.frames[0].voc.height)
        throw IOError(fmt::format("{}: a {} x {} frame in a sequence of {} x {} frames", f.annotation, f.voc.width,
                                  f.voc.height, s.frames[0].voc.width, s.frames[0].voc.height));
    out.push_back(std::move(s));
  }
  if (out.empty()) throw IOError(fmt::format("sequences: no folder of {} holds annotated frames", root_path));
  return out;
}

Tensor load_gray(const std::string& path) {
  const viz::Image img = viz::read_image(path);
  const int64_t W = img.width(), H = img.height();
  Tensor t = empty({1, H, W});
  float* p = t.data_ptr<float>();
  const uint8_t* rgb = img.rgb().data();
  for (int64_t i = 0; i < W * H; ++i)
    p[i] = float((0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2]) / 255.0);
  return t;
}

Tensor load_gray(const DefectImage& d) {
  Tensor t = load_gray(d.image);
  if (t.size(1) != d.voc.height || t.size(2) != d.voc.width)
    throw IOError(fmt::format("{}: the image is {} x {} but its annotation {} says {} x {}", d.image, t.size(2),
                              t.size(1), d.annotation, d.voc.width, d.voc.height));
  return t;
}

Targets targets_of(const VocAnnotation& a) {
  Targets t;
  std::vector<double> boxes, labels;
  for (const VocObject& o : a.objects) {
    const int c = class_index(o.name);
    QS_CHECK(c >= 0, "defect: class '{}' is not one of NEU-DET's six", o.name);
    for (double v : voc_box_continuous(o)) boxes.push_back(v);
    labels.push_back(c);
    t.difficult.push_back(o.difficult);
  }
  const int64_t n = int64_t(labels.size());
  t.boxes = n ? from_vector(boxes, {n, 4}) : empty({0, 4});
  t.labels = n ? from_vector(labels, {n}, DType::i64) : empty({0}, DType::i64);
  return t;
}

}  // namespace qs::defect
