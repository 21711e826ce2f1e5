// qiusuo ct synth --out DIR [--cases N] [--seed S] [...]: the synthetic data set
// qiusuo ct info PATH: a DICOM series folder, a NIfTI file, or a LIDC-IDRI download
// qiusuo train ct --data DIR --out DIR [...] and qiusuo eval ct CKPT --data DIR (docs/ct.md)
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "qiusuo/medical/ct_train.h"
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

std::string curve_summary(const std::vector<metrics::RocPoint>& c) {
  const metrics::OperatingPoint s90 = metrics::at_sensitivity(c, 0.9), sp90 = metrics::at_specificity(c, 0.9);
  return fmt::format("sensitivity 0.90 -> specificity {:.3f}; specificity 0.90 -> sensitivity {:.3f}", s90.specificity,
                     sp90.sensitivity);
}

}  // namespace

int cmd_train_ct(Args& a) {
  medical::TrainCtOptions o;
  o.data = a.required("data");
  o.out = a.required("out");
  o.data_options.patch_mm = a.number("patch-mm", o.data_options.patch_mm);
  o.data_options.patch = a.integer("patch", o.data_options.patch, 8, 256);
  o.model.variant = a.str("model", o.model.variant);
  o.model.width = a.integer("width", o.model.width, 1, 256);
  o.loss = a.str("loss", o.loss);
  o.gamma = a.number("gamma", o.gamma);
  o.alpha = a.number("alpha", o.alpha);
  o.epochs = int(a.integer("epochs", o.epochs, 1, 100000));
  o.batch = a.integer("batch", o.batch, 2, 4096);
  o.lr = a.number("lr", o.lr);
  o.weight_decay = a.number("weight-decay", o.weight_decay);
  o.augment = !a.flag("no-augment");
  o.sync_bn = a.flag("sync-bn");
  o.bf16 = a.flag("bf16");
  o.seed = uint64_t(a.integer("seed", 0, 0, int64_t(1) << 40));
  o.split_seed = uint64_t(a.integer("split-seed", 0, 0, int64_t(1) << 40));
  o.bootstrap = int(a.integer("bootstrap", o.bootstrap, 10, 1000000));
  o.quiet = a.flag("quiet");
  if (const int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  const medical::TrainCtResult r = medical::train_ct(o);
  std::cout << fmt::format("{} / {} / {} nodules (train / validation / test, split by patient); best epoch {} of {} "
                           "(validation AUC {:.3f}); {:.1f} volumes/s\n",
                           r.train, r.val, r.test, r.best_epoch, o.epochs, r.val_auc[size_t(r.best_epoch - 1)],
                           r.volumes_per_s);
  std::cout << fmt::format("test ROC AUC {:.3f} (95% bootstrap interval {:.3f} to {:.3f}, {} resamples); at the "
                           "validation's Youden threshold: sensitivity {:.3f}, specificity {:.3f}; {}\n",
                           r.test_auc.auc, r.test_auc.lo, r.test_auc.hi, r.test_auc.resamples,
                           r.test_at_val_threshold.sensitivity, r.test_at_val_threshold.specificity,
                           curve_summary(r.test_curve));
  std::cout << nlohmann::json{{"checkpoint", r.checkpoint}, {"model", o.model.variant}, {"loss", o.loss},
                              {"test_auc", r.test_auc.auc}, {"test_auc_lo", r.test_auc.lo}, {"test_auc_hi", r.test_auc.hi},
                              {"best_epoch", r.best_epoch}, {"volumes_per_s", r.volumes_per_s}, {"seconds", r.seconds}}
                   .dump()
            << std::endl;
  return kExitOk;
}

int cmd_eval_ct(Args& a) {
  if (a.positionals().size() != 2) throw UsageError("qiusuo eval ct CKPT --data DIR");
  const std::string ckpt = a.positionals()[1], data = a.required("data");
  const int bootstrap = int(a.integer("bootstrap", 1000, 10, 1000000));
  if (const int t = a.threads(); t > 0) set_num_threads(t);
  a.finish();
  const medical::EvalCtResult r = medical::eval_ct(ckpt, data, bootstrap);
  std::cout << fmt::format("{} nodules: ROC AUC {:.3f} (95% bootstrap interval {:.3f} to {:.3f}); {}\n", r.nodules,
                           r.auc.auc, r.auc.lo, r.auc.hi, curve_summary(r.curve));
  std::cout << nlohmann::json{{"checkpoint", ckpt}, {"data", data}, {"nodules", r.nodules}, {"auc", r.auc.auc},
                              {"auc_lo", r.auc.lo}, {"auc_hi", r.auc.hi}}
                   .dump()
            << std::endl;
  return kExitOk;
}

int cmd_ct(Args a) {
  const std::string what = a.positionals().empty() ? "" : a.positionals()[0];
  if (what == "synth") return ct_synth(a);
  if (what == "info") return ct_info(a);
  throw UsageError("qiusuo ct: synth or info (training and evaluation: qiusuo train ct, qiusuo eval ct)");
}

}  // namespace qs::cli
