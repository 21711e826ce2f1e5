// qiusuo ct synth --out DIR [--cases N] [--seed S] [--size DxHxW] [--transfer-syntax TS]
// qiusuo ct info PATH: a DICOM series folder, a NIfTI file, or a LIDC-IDRI download
// (docs/ct.md).
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/medical/dicom.h"
#include "qiusuo/medical/lidc.h"
#include "qiusuo/medical/nifti.h"
#include "qiusuo/medical/synth.h"

namespace qs::cli {

namespace {

namespace fs = std::filesystem;

void print_volume(const medical::Volume& v) {
  const auto sp = v.spacing();
  const auto o = v.world(0, 0, 0);
  std::cout << fmt::format("{} slices x {} rows x {} columns; voxel {:.3f} x {:.3f} x {:.3f} mm (i, j, k); first voxel "
                           "at ({:.1f}, {:.1f}, {:.1f}) mm RAS\n",
                           v.slices(), v.rows(), v.columns(), sp[0], sp[1], sp[2], o[0], o[1], o[2]);
}

int ct_synth(Args& a) {
  const std::string out = a.required("out");
  const int cases = int(a.integer("cases", 8, 1, 100000));
  medical::SynthOptions o;
  o.seed = uint64_t(a.integer("seed", 0, 0, int64_t(1) << 40));
  o.slices = a.integer("slices", o.slices, 8, 1024);
  o.rows = o.columns = a.integer("matrix", o.rows, 32, 1024);
  o.pixel_mm = a.number("pixel-mm", o.pixel_mm);
  o.slice_mm = a.number("slice-mm", o.slice_mm);
  o.max_nodules = int(a.integer("max-nodules", o.max_nodules, 1, 10));
  const std::string ts = a.str("transfer-syntax", "explicit-little");
  a.finish();
  const medical::SynthSummary s = medical::write_synth_dataset(out, cases, o, ts);
  std::cout << fmt::format("wrote {} synthetic CT cases to {} (DICOM series + LIDC XML per case, nifti/, truth.json): "
                           "{} nodules, {} malignant, {} benign, {} excluded (mean rating exactly 3)\n",
                           s.cases, out, s.nodules, s.malignant, s.benign, s.excluded);
  std::cout << nlohmann::json{{"out", out},         {"cases", s.cases},   {"nodules", s.nodules},
                              {"malignant", s.malignant}, {"benign", s.benign}, {"excluded", s.excluded}}
                   .dump()
            << std::endl;
  return kExitOk;
}

int ct_info(Args& a) {
  if (a.positionals().size() != 2) throw UsageError("qiusuo ct info PATH (a DICOM folder, a NIfTI file or a LIDC tree)");
  const std::string path = a.positionals()[1];
  a.finish();
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    medical::NiftiInfo info;
    const medical::Volume v = medical::read_nifti(path, &info);
    std::cout << fmt::format("{}: NIfTI-{}, datatype {}, orientation from the {}\n", path, info.version, info.datatype,
                             info.orientation);
    print_volume(v);
    return kExitOk;
  }
  const std::vector<medical::LidcCase> cases = medical::find_lidc_cases(path);
  if (cases.empty()) {
    const medical::DicomSeries s = medical::read_dicom_series(path);
    std::cout << fmt::format("{}: patient {}, series {}, {} ({} slices)\n", path, s.patient_id, s.series_uid,
                             s.transfer_syntax, s.files.size());
    print_volume(s.volume);
    return kExitOk;
  }
  int malignant = 0, benign = 0, excluded = 0;
  for (const medical::LidcCase& c : cases) {
    const medical::DicomSeries s = medical::read_dicom_series(c.dir);
    const medical::LidcRead r = medical::read_lidc_xml(c.xml);
    const std::vector<medical::LidcNodule> nodules = medical::group_nodules(r, s);
    std::cout << fmt::format("{}: {} slices, {} reading sessions, {} nodules >= 3 mm\n", s.patient_id, s.files.size(),
                             r.sessions, nodules.size());
    for (const medical::LidcNodule& n : nodules) {
      const int y = medical::label(n);
      (y == 1 ? malignant : y == 0 ? benign : excluded)++;
      std::string ratings;
      for (int m : n.malignancy) ratings += fmt::format("{}{}", ratings.empty() ? "" : ",", m);
      std::cout << fmt::format("  nodule at voxel ({:.1f}, {:.1f}, {:.1f}), {:.1f} mm, malignancy {} (mean {:.2f}): {}\n",
                               n.centre[0], n.centre[1], n.centre[2], n.diameter_mm, ratings, n.mean_malignancy,
                               y == 1 ? "malignant" : y == 0 ? "benign" : "excluded");
    }
  }
  std::cout << fmt::format("{} cases: {} malignant, {} benign, {} excluded\n", cases.size(), malignant, benign, excluded);
  return kExitOk;
}

}  // namespace

int cmd_ct(Args a) {
  const std::string what = a.positionals().empty() ? "" : a.positionals()[0];
  if (what == "synth") return ct_synth(a);
  if (what == "info") return ct_info(a);
  throw UsageError("qiusuo ct: synth or info");
}

}  // namespace qs::cli
