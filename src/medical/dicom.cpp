// DICOM CT series through DCMTK (include/qiusuo/medical/dicom.h).
#include "qiusuo/medical/dicom.h"

#include <dcmtk/config/osconfig.h>
// DCMTK's headers after its config.
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/dcmjpls/djencode.h>
#include <dcmtk/oflog/oflog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "io/atomic_file.h"
#include "qiusuo/error.h"

namespace qs::medical {

namespace {

namespace fs = std::filesystem;

// The codecs register once, for the process (DCMTK keeps a global codec list).
void init_dcmtk() {
  static const bool done = [] {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);  // errors are reported here
    DJDecoderRegistration::registerCodecs();
    DJEncoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    // Raw, not "cooked", encoding: DCMTK 3.6.7's cooked JPEG-LS path (fixPaddingIfNecessary)
    // writes past its buffer on small frames (valgrind shows it on a 6 x 7 slice).
    DJLSEncoderRegistration::registerCodecs(0, 0, 0, 0, /*preferCookedEncoding=*/OFFalse);
    DcmRLEDecoderRegistration::registerCodecs();
    DcmRLEEncoderRegistration::registerCodecs();
    return true;
  }();
  (void)done;
}

// A DICOM Part 10 file: 128 bytes of preamble, then "DICM".
bool has_dicom_preamble(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  char buf[132];
  return f.read(buf, 132) && std::memcmp(buf + 128, "DICM", 4) == 0;
}

struct Slice {
  std::string file;
  std::unique_ptr<DcmFileFormat> ff;
  std::string sop, series, study, patient, modality;
  double ipp[3] = {0, 0, 0}, iop[6] = {0, 0, 0, 0, 0, 0}, ps[2] = {0, 0};
  Uint16 rows = 0, cols = 0, bits_alloc = 0, bits_stored = 0, high_bit = 0, pixel_rep = 0;
  double slope = 1, intercept = 0, thickness = 0;
  double pos = 0;  // along the normal
};

std::string text(DcmDataset& ds, const DcmTagKey& tag) {
  OFString s;
  ds.findAndGetOFStringArray(tag, s);
  return std::string(s.c_str());
}

Uint16 required_u16(DcmDataset& ds, const DcmTagKey& tag, const char* name, const std::string& file) {
  Uint16 v = 0;
  if (ds.findAndGetUint16(tag, v).bad()) throw IOError(fmt::format("{}: no {} attribute", file, name));
  return v;
}

void required_f64(DcmDataset& ds, const DcmTagKey& tag, const char* name, double* out, int n, const std::string& file) {
  for (int i = 0; i < n; ++i) {
    Float64 v = 0;
    if (ds.findAndGetFloat64(tag, v, unsigned(i)).bad() || !std::isfinite(v))
      throw IOError(fmt::format("{}: {} is missing or has fewer than {} numbers", file, name, n));
    out[i] = v;
  }
}

double optional_f64(DcmDataset& ds, const DcmTagKey& tag, double fallback) {
  Float64 v = 0;
  return ds.findAndGetFloat64(tag, v).good() && std::isfinite(v) ? v : fallback;
}

Slice read_header(const fs::path& p) {
  Slice s;
  s.file = p.string();
  s.ff = std::make_unique<DcmFileFormat>();
  OFCondition c = s.ff->loadFile(OFFilename(s.file.c_str()), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_fileOnly);
  if (c.bad()) throw IOError(fmt::format("{}: not a readable DICOM file: {}", s.file, c.text()));
  DcmDataset& ds = *s.ff->getDataset();
  s.sop = text(ds, DCM_SOPInstanceUID), s.series = text(ds, DCM_SeriesInstanceUID);
  s.study = text(ds, DCM_StudyInstanceUID), s.patient = text(ds, DCM_PatientID), s.modality = text(ds, DCM_Modality);
  return s;
}

void read_geometry(Slice& s) {
  DcmDataset& ds = *s.ff->getDataset();
  const std::string& f = s.file;
  required_f64(ds, DCM_ImagePositionPatient, "ImagePositionPatient", s.ipp, 3, f);
  required_f64(ds, DCM_ImageOrientationPatient, "ImageOrientationPatient", s.iop, 6, f);
  required_f64(ds, DCM_PixelSpacing, "PixelSpacing", s.ps, 2, f);
  if (s.ps[0] <= 0 || s.ps[1] <= 0) throw IOError(fmt::format("{}: PixelSpacing {}\\{} is not positive", f, s.ps[0], s.ps[1]));
  s.rows = required_u16(ds, DCM_Rows, "Rows", f), s.cols = required_u16(ds, DCM_Columns, "Columns", f);
  s.bits_alloc = required_u16(ds, DCM_BitsAllocated, "BitsAllocated", f);
  s.bits_stored = required_u16(ds, DCM_BitsStored, "BitsStored", f);
  s.high_bit = required_u16(ds, DCM_HighBit, "HighBit", f);
  s.pixel_rep = required_u16(ds, DCM_PixelRepresentation, "PixelRepresentation", f);
  if (s.rows == 0 || s.cols == 0) throw IOError(fmt::format("{}: Rows x Columns is {} x {}", f, s.rows, s.cols));
  if (s.bits_alloc != 8 && s.bits_alloc != 16)
    throw IOError(fmt::format("{}: BitsAllocated {} (8 or 16 are read)", f, s.bits_alloc));
  if (s.bits_stored == 0 || s.bits_stored > s.bits_alloc)
    throw IOError(fmt::format("{}: BitsStored {} with BitsAllocated {}", f, s.bits_stored, s.bits_alloc));
  if (s.high_bit >= s.bits_alloc || s.high_bit + 1 < s.bits_stored)
    throw IOError(fmt::format("{}: HighBit {} does not fit BitsAllocated {} and BitsStored {}", f, s.high_bit,
                              s.bits_alloc, s.bits_stored));
  if (s.pixel_rep > 1) throw IOError(fmt::format("{}: PixelRepresentation {} (0 or 1)", f, s.pixel_rep));
  Uint16 spp = 1;
  ds.findAndGetUint16(DCM_SamplesPerPixel, spp);
  const std::string photo = text(ds, DCM_PhotometricInterpretation);
  if (spp != 1 || (photo != "MONOCHROME2" && photo != "MONOCHROME1" && !photo.empty()))
    throw IOError(fmt::format("{}: {} samples per pixel, {}: a greyscale image is expected", f, spp, photo));
  s.slope = optional_f64(ds, DCM_RescaleSlope, 1.0), s.intercept = optional_f64(ds, DCM_RescaleIntercept, 0.0);
  s.thickness = optional_f64(ds, DCM_SliceThickness, 0.0);
}

void cross(const double* a, const double* b, double* out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

// DCMTK 3.6.7 decodes a JPEG transfer syntax (not JPEG-LS) only after walking the markers of
// the first fragment for the frame header's sample precision
// (DJCodecDecoder::scanJpegDataForBitDepth). That walk never steps over a TEM marker (FF01):
// a stream that holds one before its SOF keeps the process spinning forever (a hang found by
// fuzz_dicom, tests/malformed/dicom_jpeg_tem_before_sof_hang.dcm). This replays the walk
// and says whether it would reach TEM; every other path of it ends (a SOF, a byte that is
// no marker, or the end of the fragment).
bool dcmtk_precision_scan_spins(const Uint8* d, size_t len) {
  auto u16 = [&](size_t at) { return size_t(d[at]) << 8 | d[at + 1]; };
  size_t off = 0;
  while (off + 4 < len) {
    const size_t m = u16(off);
    if (m == 0xff01) return true;                                      // TEM: the walk does not move
    if (m >= 0xffc0 && m <= 0xffcf && m != 0xffc4 && m != 0xffc8 && m != 0xffcc) return false;  // SOF
    if (m == 0xffc4 || m == 0xffc8 || m == 0xffcc || (m >= 0xffda && m <= 0xfffe))
      off += u16(off + 2) + 2;                                         // a segment with a length
    else if ((m >= 0xffd0 && m <= 0xffd9) || (d[off] == 0xff && d[off + 1] > 2 && d[off + 1] <= 0xbf))
      off += 2;                                                        // RSTn, SOI, EOI, RES
    else
      return false;                                                    // not a marker: DCMTK gives up
  }
  return false;
}

// Refuses a JPEG-coded slice whose first fragment would make DCMTK's precision walk spin.
void check_jpeg_fragment(DcmElement* px, E_TransferSyntax xfer, const std::string& file) {
  if (xfer < EXS_JPEGProcess1 || xfer > EXS_JPEGProcess14SV1) return;  // not a JPEG (ITU T.81) syntax
  E_TransferSyntax rep = EXS_Unknown;
  const DcmRepresentationParameter* param = nullptr;
  auto* pixel = dynamic_cast<DcmPixelData*>(px);
  if (!pixel) return;  // not DCMTK's pixel data class: DCMTK will not decode it either
  pixel->getOriginalRepresentationKey(rep, param);
  DcmPixelSequence* seq = nullptr;
  DcmPixelItem* item = nullptr;
  Uint8* bytes = nullptr;
  if (pixel->getEncapsulatedRepresentation(rep, param, seq).bad() || !seq || seq->getItem(item, 1).bad() || !item ||
      item->getUint8Array(bytes).bad() || !bytes)
    return;  // no first fragment: DCMTK reports that itself
  if (dcmtk_precision_scan_spins(bytes, item->getLength()))
    throw IOError(fmt::format("{}: its {} stream holds a TEM marker (FF01) before its frame header; DCMTK 3.6.7's "
                              "decoder cannot read past it",
                              file, DcmXfer(xfer).getXferName()));
}

// The stored values of one slice, decoded and rescaled to HU, into dst [rows * cols].
void decode(Slice& s, float* dst) {
  DcmDataset& ds = *s.ff->getDataset();
  const int64_t n = int64_t(s.rows) * s.cols, bytes = n * (s.bits_alloc / 8);
  DcmElement* px = nullptr;
  if (ds.findAndGetElement(DCM_PixelData, px).bad() || !px)
    throw IOError(fmt::format("{}: no PixelData", s.file));
  const E_TransferSyntax xfer = ds.getOriginalXfer();
  if (DcmXfer(xfer).isEncapsulated()) {
    check_jpeg_fragment(px, xfer, s.file);
    if (ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad() || !ds.canWriteXfer(EXS_LittleEndianExplicit))
      throw IOError(fmt::format("{}: its transfer syntax {} could not be decoded", s.file, DcmXfer(xfer).getXferName()));
  } else {
    std::error_code ec;
    const int64_t file_bytes = int64_t(fs::file_size(s.file, ec));
    if (int64_t(px->getLength()) > file_bytes)
      throw IOError(fmt::format("{}: PixelData declares {} bytes, the file holds {}", s.file, px->getLength(), file_bytes));
  }
  const uint32_t shift = uint32_t(s.high_bit + 1 - s.bits_stored), mask = (1u << s.bits_stored) - 1u;
  const uint32_t sign = 1u << (s.bits_stored - 1);
  auto value = [&](uint32_t raw) -> double {
    uint32_t v = (raw >> shift) & mask;
    if (s.pixel_rep == 1 && (v & sign)) return double(int64_t(v) - int64_t(mask) - 1);
    return double(v);
  };
  if (s.bits_alloc == 16) {
    const Uint16* p = nullptr;
    unsigned long count = 0;
    if (ds.findAndGetUint16Array(DCM_PixelData, p, &count).bad() || !p)
      throw IOError(fmt::format("{}: PixelData could not be read", s.file));
    if (int64_t(count) < n)
      throw IOError(fmt::format("{}: PixelData holds {} bytes, Rows x Columns x BitsAllocated / 8 is {}", s.file,
                                count * 2, bytes));
    for (int64_t i = 0; i < n; ++i) dst[i] = float(value(p[i]) * s.slope + s.intercept);
  } else {
    const Uint8* p = nullptr;
    unsigned long count = 0;
    if (ds.findAndGetUint8Array(DCM_PixelData, p, &count).bad() || !p)
      throw IOError(fmt::format("{}: PixelData could not be read", s.file));
    if (int64_t(count) < n)
      throw IOError(fmt::format("{}: PixelData holds {} bytes, Rows x Columns x BitsAllocated / 8 is {}", s.file, count,
                                bytes));
    for (int64_t i = 0; i < n; ++i) dst[i] = float(value(p[i]) * s.slope + s.intercept);
  }
}

}  // namespace

DicomSeries read_dicom_series(const std::string& dir, const DicomReadOptions& opt) {
  init_dcmtk();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw IOError(fmt::format("{}: not a folder", dir));
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && has_dicom_preamble(e.path())) paths.push_back(e.path());
  if (ec) throw IOError(fmt::format("{}: cannot list: {}", dir, ec.message()));
  if (paths.empty()) throw IOError(fmt::format("{}: no DICOM file (a Part 10 file starts with a preamble and DICM)", dir));
  std::sort(paths.begin(), paths.end());
  std::vector<Slice> all;
  for (const fs::path& p : paths) all.push_back(read_header(p));
  std::map<std::string, int> series;
  for (const Slice& s : all) ++series[s.series];
  std::string uid = opt.series_uid;
  if (uid.empty()) {
    if (series.size() > 1) {
      std::string list;
      for (auto& [u, k] : series) list += fmt::format("{}{} ({} files)", list.empty() ? "" : ", ", u, k);
      throw IOError(fmt::format("{}: the folder holds {} series: {}; choose one", dir, series.size(), list));
    }
    uid = series.begin()->first;
  } else if (!series.count(uid)) {
    throw IOError(fmt::format("{}: no series {} in the folder", dir, uid));
  }
  std::vector<Slice> sl;
  for (Slice& s : all)
    if (s.series == uid) sl.push_back(std::move(s));
  for (Slice& s : sl) {
    if (opt.require_ct && s.modality != "CT")
      throw IOError(fmt::format("{}: modality '{}', not CT", s.file, s.modality));
    read_geometry(s);
  }
  // One geometry for the series: size, pixel spacing and orientation of the first slice.
  const Slice& a = sl[0];
  for (const Slice& s : sl) {
    if (s.rows != a.rows || s.cols != a.cols)
      throw IOError(fmt::format("{}: {} x {} pixels, {} has {} x {}", s.file, s.rows, s.cols, a.file, a.rows, a.cols));
    if (std::fabs(s.ps[0] - a.ps[0]) > 1e-4 * a.ps[0] || std::fabs(s.ps[1] - a.ps[1]) > 1e-4 * a.ps[1])
      throw IOError(fmt::format("{}: PixelSpacing {}\\{}, {} has {}\\{}", s.file, s.ps[0], s.ps[1], a.file, a.ps[0], a.ps[1]));
    for (int i = 0; i < 6; ++i)
      if (std::fabs(s.iop[i] - a.iop[i]) > 1e-4)
        throw IOError(fmt::format("{}: ImageOrientationPatient differs from {}'s: not one series of parallel slices",
                                  s.file, a.file));
  }
  double normal[3];
  cross(a.iop, a.iop + 3, normal);
  const double nn = std::sqrt(normal[0] * normal[0] + normal[1] * normal[1] + normal[2] * normal[2]);
  if (nn < 0.5) throw IOError(fmt::format("{}: ImageOrientationPatient's two directions are parallel", a.file));
  for (double& x : normal) x /= nn;
  for (Slice& s : sl) s.pos = s.ipp[0] * normal[0] + s.ipp[1] * normal[1] + s.ipp[2] * normal[2];
  std::stable_sort(sl.begin(), sl.end(), [](const Slice& x, const Slice& y) { return x.pos < y.pos; });
  const int64_t d = int64_t(sl.size());
  double dz = a.thickness > 0 ? a.thickness : 1.0;
  if (d > 1) {
    std::vector<double> gaps;
    for (int64_t k = 0; k + 1 < d; ++k) gaps.push_back(sl[size_t(k + 1)].pos - sl[size_t(k)].pos);
    std::vector<double> sorted = gaps;
    std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
    dz = sorted[sorted.size() / 2];
    for (size_t k = 0; k < gaps.size(); ++k) {
      const Slice &s = sl[k], &t = sl[k + 1];
      if (gaps[k] < 1e-3 * std::max(dz, 1e-3))
        throw IOError(fmt::format("{} and {}: two slices at one position ({:.4f} mm along the normal): a duplicate "
                                  "slice", s.file, t.file, s.pos));
      if (dz <= 0) continue;
      const double r = gaps[k] / dz;
      if (std::fabs(r - 1) > opt.spacing_tolerance) {
        if (r > 1.5 && std::fabs(r - std::round(r)) < opt.spacing_tolerance * std::round(r))
          throw IOError(fmt::format("{} and {}: {:.3f} mm apart where the series' slices are {:.3f} mm apart: {} "
                                    "slice(s) missing", s.file, t.file, gaps[k], dz, int64_t(std::round(r)) - 1));
        throw IOError(fmt::format("{} and {}: {:.3f} mm apart where the series' slices are {:.3f} mm apart: "
                                  "inconsistent spacing", s.file, t.file, gaps[k], dz));
      }
    }
  }
  const int64_t h = a.rows, w = a.cols;
  if (h * w > opt.max_voxels || d * h * w > opt.max_voxels)
    throw IOError(fmt::format("{}: {} slices of {} x {} are over the limit of {} voxels", dir, d, h, w, opt.max_voxels));

  DicomSeries out;
  out.series_uid = uid, out.study_uid = a.study, out.patient_id = a.patient;
  out.transfer_syntax = DcmXfer(a.ff->getDataset()->getOriginalXfer()).getXferName();
  Volume& v = out.volume;
  v.modality = a.modality;
  v.voxels = empty({d, h, w}, DType::f32);
  float* dst = v.voxels.data_ptr<float>();
  for (int64_t k = 0; k < d; ++k) {
    Slice& s = sl[size_t(k)];
    decode(s, dst + k * h * w);
    s.ff.reset();  // the decoded pixels are the volume's now
    out.files.push_back(s.file), out.sop_uids.push_back(s.sop), out.positions.push_back(s.pos);
  }
  // LPS: i along the row direction (PixelSpacing[1] between columns), j along the column
  // direction (PixelSpacing[0] between rows), k along the normal; then to RAS.
  Affine lps{};
  for (int r = 0; r < 3; ++r) {
    lps[size_t(r)][0] = a.iop[r] * a.ps[1];
    lps[size_t(r)][1] = a.iop[3 + r] * a.ps[0];
    lps[size_t(r)][2] = normal[r] * dz;
    lps[size_t(r)][3] = sl[0].ipp[r];
  }
  lps[3][3] = 1;
  v.affine = lps;
  for (int c = 0; c < 4; ++c) v.affine[0][size_t(c)] = -lps[0][size_t(c)], v.affine[1][size_t(c)] = -lps[1][size_t(c)];
  return out;
}

namespace {

// "2.25.<decimal>": a UID from a 64-bit number (the 2.25 root takes UUID-derived integers).
std::string uid_from(uint64_t seed, uint64_t salt) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + salt * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull;
  x ^= x >> 31, x *= 0xD6E8FEB86659FD93ull, x ^= x >> 32;
  return fmt::format("2.25.{}{:06}", x, salt % 1000000);
}

std::string ds_list(std::initializer_list<double> v) {
  std::string s;
  for (double x : v) s += fmt::format("{}{:.8g}", s.empty() ? "" : "\\", x);
  return s;
}

void put(DcmDataset& ds, const DcmTagKey& tag, const std::string& value, const std::string& file) {
  if (ds.putAndInsertString(tag, value.c_str()).bad())
    throw IOError(fmt::format("{}: could not set {} to '{}'", file, DcmTag(tag).getTagName(), value));
}

}  // namespace

DicomSeries write_dicom_series(const std::string& dir, const Volume& v, const DicomWriteOptions& opt) {
  init_dcmtk();
  QS_CHECK(v.voxels.defined() && v.voxels.dim() == 3 && v.voxels.dtype() == DType::f32,
           "write_dicom_series: voxels must be f32 [slices, rows, columns]");
  E_TransferSyntax xfer = EXS_LittleEndianExplicit;
  if (opt.transfer_syntax == "implicit-little") xfer = EXS_LittleEndianImplicit;
  else if (opt.transfer_syntax == "jpeg-ls-lossless") xfer = EXS_JPEGLSLossless;
  else if (opt.transfer_syntax == "jpeg-lossless") xfer = EXS_JPEGProcess14SV1;
  else if (opt.transfer_syntax == "rle") xfer = EXS_RLELossless;
  else QS_CHECK(opt.transfer_syntax == "explicit-little",
                "write_dicom_series: unknown transfer syntax '{}' (explicit-little, implicit-little, jpeg-ls-lossless, "
                "jpeg-lossless, rle)",
                opt.transfer_syntax);
  // Back to LPS; the columns give the directions and spacings.
  Affine lps = v.affine;
  for (int c = 0; c < 4; ++c) lps[0][size_t(c)] = -lps[0][size_t(c)], lps[1][size_t(c)] = -lps[1][size_t(c)];
  const std::array<double, 3> sp = v.spacing();
  double dir3[3][3];
  for (int c = 0; c < 3; ++c)
    for (int r = 0; r < 3; ++r) dir3[c][r] = lps[size_t(r)][size_t(c)] / sp[size_t(c)];
  for (int a = 0; a < 3; ++a)
    for (int b = a + 1; b < 3; ++b) {
      const double dot = dir3[a][0] * dir3[b][0] + dir3[a][1] * dir3[b][1] + dir3[a][2] * dir3[b][2];
      QS_CHECK(std::fabs(dot) < 1e-6, "write_dicom_series: the affine's axes {} and {} are not orthogonal (dot {})",
               a, b, dot);
    }
  double normal[3];
  cross(dir3[0], dir3[1], normal);
  QS_CHECK(normal[0] * dir3[2][0] + normal[1] * dir3[2][1] + normal[2] * dir3[2][2] > 0,
           "write_dicom_series: the slice axis points against the row x column normal (a left-handed grid, which "
           "readers would turn around): reverse the slices and the affine's third column first");
  const Tensor x = v.voxels.contiguous();
  const int64_t d = x.size(0), h = x.size(1), w = x.size(2);
  QS_CHECK(h <= 65535 && w <= 65535, "write_dicom_series: {} x {} pixels do not fit DICOM's Rows and Columns", h, w);
  fs::create_directories(dir);
  const std::string study = opt.study_uid.empty() ? uid_from(opt.uid_seed, 1) : opt.study_uid;
  const std::string series = opt.series_uid.empty() ? uid_from(opt.uid_seed, 2) : opt.series_uid;
  const std::string frame = uid_from(opt.uid_seed, 3);
  DicomSeries out;
  out.volume = v, out.volume.modality = "CT";
  out.patient_id = opt.patient_id, out.study_uid = study, out.series_uid = series;
  out.transfer_syntax = DcmXfer(xfer).getXferName();
  std::vector<Uint16> px(size_t(h * w));
  const float* src = x.data_ptr<float>();
  for (int64_t k = 0; k < d; ++k) {
    const std::string file = (fs::path(dir) / fmt::format("slice_{:04}.dcm", k + 1)).string();
    const std::string sop = uid_from(opt.uid_seed, 1000 + uint64_t(k));
    DcmFileFormat ff;
    DcmDataset& ds = *ff.getDataset();
    put(ds, DCM_SOPClassUID, UID_CTImageStorage, file);
    put(ds, DCM_SOPInstanceUID, sop, file);
    put(ds, DCM_StudyInstanceUID, study, file);
    put(ds, DCM_SeriesInstanceUID, series, file);
    put(ds, DCM_FrameOfReferenceUID, frame, file);
    put(ds, DCM_PatientID, opt.patient_id, file);
    put(ds, DCM_PatientName, opt.patient_id, file);
    put(ds, DCM_Modality, "CT", file);
    put(ds, DCM_SeriesDescription, opt.series_description, file);
    put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL", file);
    put(ds, DCM_InstanceNumber, std::to_string(k + 1), file);
    double ipp[3];
    for (int r = 0; r < 3; ++r) ipp[r] = lps[size_t(r)][3] + lps[size_t(r)][2] * double(k);
    put(ds, DCM_ImagePositionPatient, ds_list({ipp[0], ipp[1], ipp[2]}), file);
    put(ds, DCM_ImageOrientationPatient,
        ds_list({dir3[0][0], dir3[0][1], dir3[0][2], dir3[1][0], dir3[1][1], dir3[1][2]}), file);
    put(ds, DCM_PixelSpacing, ds_list({sp[1], sp[0]}), file);
    put(ds, DCM_SliceThickness, ds_list({sp[2]}), file);
    put(ds, DCM_PhotometricInterpretation, "MONOCHROME2", file);
    put(ds, DCM_RescaleIntercept, "-1024", file);
    put(ds, DCM_RescaleSlope, "1", file);
    put(ds, DCM_RescaleType, "HU", file);
    for (const auto& [tag, value] : {std::pair{DCM_Rows, Uint16(h)}, std::pair{DCM_Columns, Uint16(w)},
                                     std::pair{DCM_SamplesPerPixel, Uint16(1)}, std::pair{DCM_BitsAllocated, Uint16(16)},
                                     std::pair{DCM_BitsStored, Uint16(16)}, std::pair{DCM_HighBit, Uint16(15)},
                                     std::pair{DCM_PixelRepresentation, Uint16(0)}})
      if (ds.putAndInsertUint16(tag, value).bad()) throw IOError(fmt::format("{}: could not set an attribute", file));
    const float* s = src + k * h * w;
    for (int64_t i = 0; i < h * w; ++i)
      px[size_t(i)] = Uint16(std::clamp(std::lround(double(s[i]) + 1024.0), 0L, 65535L));
    if (ds.putAndInsertUint16Array(DCM_PixelData, px.data(), static_cast<unsigned long>(px.size())).bad())
      throw IOError(fmt::format("{}: could not set PixelData", file));
    if (DcmXfer(xfer).isEncapsulated() &&
        (ds.chooseRepresentation(xfer, nullptr).bad() || !ds.canWriteXfer(xfer)))
      throw IOError(fmt::format("{}: DCMTK could not encode {}", file, DcmXfer(xfer).getXferName()));
    const std::string tmp = (fs::path(dir) / fmt::format(".slice_{:04}.dcm.tmp{}", k + 1, ::getpid())).string();
    OFCondition c = ff.saveFile(OFFilename(tmp.c_str()), xfer);
    if (c.bad()) {
      std::remove(tmp.c_str());
      throw IOError(fmt::format("{}: writing failed: {}", file, c.text()));
    }
    io::detail::publish(tmp, file);
    out.files.push_back(file), out.sop_uids.push_back(sop);
    out.positions.push_back(ipp[0] * normal[0] + ipp[1] * normal[1] + ipp[2] * normal[2]);
  }
  return out;
}

}  // namespace qs::medical
