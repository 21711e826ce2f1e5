// NIfTI and DICOM input (include/qiusuo/medical/): round trips through the files, the
// orientation conventions, and every kind of bad input the CT issue lists.
#include <gtest/gtest.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "qiusuo/medical/dicom.h"
#include "qiusuo/medical/ct_train.h"
#include "qiusuo/medical/lidc.h"
#include "qiusuo/medical/nifti.h"
#include "qiusuo/medical/preprocess.h"
#include "qiusuo/medical/synth.h"
#include "qiusuo/ops.h"
#include "test_util.h"

using namespace qs;
using namespace qs::medical;
namespace fs = std::filesystem;
using qs::testing::error_of;

namespace {

// A small volume of integer HU values (exact in int16 and in the DICOM u16 + intercept
// encoding) on an oblique, anisotropic grid with an offset origin.
Volume sample_volume(int64_t d = 5, int64_t h = 6, int64_t w = 7) {
  Generator g(3);
  Volume v;
  v.voxels = randint(-1000, 1000, {d, h, w}, DType::i64, &g).to(DType::f32);
  const double c = std::cos(0.3), s = std::sin(0.3);
  // Columns: i along (c, s, 0) * 0.7 mm, j along (-s, c, 0) * 0.8 mm, k along z * 2.5 mm.
  v.affine = {{{c * 0.7, -s * 0.8, 0, -120.5}, {s * 0.7, c * 0.8, 0, 33.25}, {0, 0, 2.5, -80}, {0, 0, 0, 1}}};
  return v;
}

void expect_affine_near(const Affine& a, const Affine& b, double tol) {
  for (size_t r = 0; r < 4; ++r)
    for (size_t c = 0; c < 4; ++c) EXPECT_NEAR(a[r][c], b[r][c], tol) << "affine[" << r << "][" << c << "]";
}

double max_diff(const Tensor& a, const Tensor& b) { return amax(abs(sub(a, b))).item(); }

template <typename T>
void patch(const std::string& path, int64_t offset, T value) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(offset);
  f.write(reinterpret_cast<const char*>(&value), sizeof(T));
}

// Loads a DICOM file, lets `edit` change its dataset, and saves it back in place.
void edit_dicom(const std::string& file, const std::function<void(DcmDataset&)>& edit) {
  DcmFileFormat ff;
  ASSERT_TRUE(ff.loadFile(file.c_str()).good()) << file;
  edit(*ff.getDataset());
  ASSERT_TRUE(ff.saveFile(file.c_str(), ff.getDataset()->getOriginalXfer()).good()) << file;
}

}  // namespace

TEST(Nifti, RoundTripsVersionsCompressionAndTypes) {
  const std::string dir = qs::testing::temp_dir("nifti_roundtrip");
  const Volume v = sample_volume();
  for (int version : {1, 2})
    for (const char* ext : {".nii", ".nii.gz"})
      for (bool int16 : {true, false}) {
        const std::string path = fmt::format("{}/v{}_{}{}", dir, version, int16 ? "i16" : "f32", ext);
        SCOPED_TRACE(path);
        write_nifti(path, v, {.version = version, .int16 = int16});
        NiftiInfo info;
        const Volume back = read_nifti(path, &info);
        EXPECT_EQ(info.version, version);
        EXPECT_EQ(info.datatype, int16 ? 4 : 16);  // DT_INT16, DT_FLOAT32
        EXPECT_EQ(info.orientation, "sform");
        EXPECT_EQ(info.qform_code, 1);
        ASSERT_EQ(back.voxels.shape(), v.voxels.shape());
        EXPECT_EQ(max_diff(back.voxels, v.voxels), 0.0);
        const double tol = version == 1 ? 1e-6 : 1e-12;  // NIfTI-1 stores the sform in f32, NIfTI-2 in f64
        expect_affine_near(back.affine, v.affine, tol);
        const auto sp = back.spacing();
        EXPECT_NEAR(sp[0], 0.7, tol);
        EXPECT_NEAR(sp[1], 0.8, tol);
        EXPECT_NEAR(sp[2], 2.5, tol);
        EXPECT_EQ(fs::directory_iterator(dir)->path().filename().string().rfind(".", 0), std::string::npos)
            << "a temporary file was left";
      }
}

// The standard's precedence: sform, else qform (a quaternion: the same rotation here), else
// the voxel sizes alone. NIfTI-1 keeps qform_code at byte 252 and sform_code at 254.
TEST(Nifti, OrientationFallsBackFromSformToQformToPixdim) {
  const std::string path = qs::testing::temp_dir("nifti_orient") + "/v.nii";
  const Volume v = sample_volume();
  write_nifti(path, v);
  patch<int16_t>(path, 254, 0);
  NiftiInfo info;
  Volume back = read_nifti(path, &info);
  EXPECT_EQ(info.orientation, "qform");
  expect_affine_near(back.affine, v.affine, 1e-5);  // the quaternion is stored in f32
  patch<int16_t>(path, 252, 0);
  back = read_nifti(path, &info);
  EXPECT_EQ(info.orientation, "pixdim");
  expect_affine_near(back.affine, axis_aligned({0.7, 0.8, 2.5}), 1e-6);
}

// Scaled integers: scl_slope and scl_inter (bytes 112 and 116 of NIfTI-1) are applied.
TEST(Nifti, SlopeAndInterceptAreApplied) {
  const std::string path = qs::testing::temp_dir("nifti_scale") + "/v.nii";
  Volume v = sample_volume(2, 3, 4);
  write_nifti(path, v);
  patch<float>(path, 112, 0.5f);
  patch<float>(path, 116, -10.0f);
  NiftiInfo info;
  const Volume back = read_nifti(path, &info);
  EXPECT_EQ(info.scl_slope, 0.5);
  EXPECT_EQ(max_diff(back.voxels, v.voxels * 0.5 - 10.0), 0.0);
}

TEST(Nifti, BadFilesAreClearErrorsWithoutHugeAllocations) {
  const std::string dir = qs::testing::temp_dir("nifti_bad");
  // 3000 x 3000 x 500 f32 = 18 GB declared in a 377-byte file.
  const std::string small = dir + "/small.nii", huge = dir + "/huge.nii";
  write_nifti(small, sample_volume(1, 1, 1), {.int16 = false});
  std::string bytes = qs::testing::read_bytes(small);
  bytes.resize(377, '\0');
  qs::testing::write_bytes(huge, bytes);
  patch<int16_t>(huge, 42, 3000);
  patch<int16_t>(huge, 44, 3000);
  patch<int16_t>(huge, 46, 500);
  std::string e = error_of([&] { read_nifti(huge); });
  EXPECT_NE(e.find("over the limit"), std::string::npos) << e;
  e = error_of([&] { read_nifti(huge, nullptr, int64_t(1) << 40); });
  EXPECT_NE(e.find("declares 18000000000 bytes of voxels at offset 352, the file holds 377 bytes"), std::string::npos)
      << e;
  // The same lie in a gzip file: more than deflate can expand to, refused before reading.
  const std::string gz = dir + "/huge.nii.gz";
  {
    std::string cmd = "gzip -c " + huge + " > " + gz;
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  e = error_of([&] { read_nifti(gz, nullptr, int64_t(1) << 40); });
  EXPECT_NE(e.find("more than a"), std::string::npos) << e;
  // A truncated gzip stream: fewer bytes than declared, found by reading.
  const std::string trunc = dir + "/trunc.nii.gz";
  write_nifti(trunc, sample_volume(8, 16, 16));
  std::string t = qs::testing::read_bytes(trunc);
  qs::testing::write_bytes(trunc, t.substr(0, t.size() / 2));
  e = error_of([&] { read_nifti(trunc); });
  EXPECT_FALSE(e.empty());
  // Not NIfTI at all; a 4D series; a missing file.
  qs::testing::write_bytes(dir + "/text.nii", std::string(400, 'x'));
  e = error_of([&] { read_nifti(dir + "/text.nii"); });
  EXPECT_NE(e.find("not a NIfTI-1 or NIfTI-2 file"), std::string::npos) << e;
  const std::string four = dir + "/four.nii";
  write_nifti(four, sample_volume(2, 2, 2));
  patch<int16_t>(four, 40, 4);  // dim[0] = 4
  patch<int16_t>(four, 48, 2);  // dim[4] = 2 time points
  e = error_of([&] { read_nifti(four); });
  EXPECT_NE(e.find("one 3D volume is read"), std::string::npos) << e;
  // fuzz_nifti's first finding: a NIfTI-2 header whose dim[0] is huge made libnifti2 3.0.1
  // overflow its stack; the header is checked before libnifti sees it.
  const std::string dim0 = dir + "/dim0.nii";
  write_nifti(dim0, sample_volume(2, 2, 2), {.version = 2});
  patch<int64_t>(dim0, 16, int64_t(0x0092000000000003));
  e = error_of([&] { read_nifti(dim0); });
  EXPECT_NE(e.find("declares 41095346599755779 dimensions"), std::string::npos) << e;
  // fuzz_nifti's second finding: libnifti allocates each extension's declared size, bounded
  // only by the data offset, so a data offset past the end of the file (here with a 1.2 GB
  // extension declared in a 400-byte file) is refused before libnifti reads the extensions.
  for (const int version : {1, 2}) {
    const std::string ext = dir + "/ext" + std::to_string(version) + ".nii";
    write_nifti(ext, sample_volume(1, 1, 1), {.version = version});
    std::string b = qs::testing::read_bytes(ext);
    b.resize(version == 1 ? 400 : 600, '\0');
    qs::testing::write_bytes(ext, b);
    const int64_t hs = version == 1 ? 348 : 540;
    if (version == 1)
      patch<float>(ext, 108, 1.5e9f);
    else
      patch<int64_t>(ext, 168, 1500000000);
    patch<uint8_t>(ext, hs, 1);                  // extender: extensions follow
    patch<int32_t>(ext, hs + 4, 1200000000);     // esize
    patch<int32_t>(ext, hs + 8, 4);              // ecode (AFNI)
    e = error_of([&] { read_nifti(ext); });
    EXPECT_NE(e.find(fmt::format("the data offset 1500000000 is past the end of the file ({} bytes)", b.size())),
              std::string::npos)
        << e;
  }
  // The fuzzer's own input, kept in the catalogue (NIfTI-1, data offset 1.5e9, 400 bytes).
  const std::string found = std::string(QS_SOURCE_DIR) + "/tests/malformed/nifti_extension_1200mb_in_400_bytes.nii";
  e = error_of([&] { read_nifti(found); });
  EXPECT_NE(e.find("nifti_extension_1200mb_in_400_bytes.nii: the data offset 1500000000 is past the end of the file"),
            std::string::npos)
      << e;
  e = error_of([&] { read_nifti(dir + "/none.nii"); });
  EXPECT_NE(e.find("no such file"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { write_nifti(dir + "/x.img", sample_volume()); }).find(".nii or .nii.gz"), std::string::npos);
}

// A CT series written and read back in each transfer syntax: the same HU values, the same
// geometry (DICOM's decimal strings carry 8 significant digits), the slices in order.
TEST(Dicom, SeriesRoundTripsInEveryTransferSyntax) {
  const Volume v = sample_volume();
  for (const char* ts : {"explicit-little", "implicit-little", "jpeg-ls-lossless", "jpeg-lossless", "rle"}) {
    SCOPED_TRACE(ts);
    const std::string dir = qs::testing::temp_dir(std::string("dicom_rt_") + ts);
    const DicomSeries w = write_dicom_series(dir, v, {.patient_id = "SYN-1", .uid_seed = 7, .transfer_syntax = ts});
    ASSERT_EQ(w.files.size(), 5u);
    const DicomSeries r = read_dicom_series(dir);
    EXPECT_EQ(r.volume.modality, "CT");
    EXPECT_EQ(r.patient_id, "SYN-1");
    EXPECT_EQ(r.series_uid, w.series_uid);
    EXPECT_EQ(r.sop_uids, w.sop_uids);
    EXPECT_EQ(r.transfer_syntax, w.transfer_syntax);
    ASSERT_EQ(r.volume.voxels.shape(), v.voxels.shape());
    EXPECT_EQ(max_diff(r.volume.voxels, v.voxels), 0.0);
    expect_affine_near(r.volume.affine, v.affine, 1e-6);
    for (size_t k = 0; k < 5; ++k) EXPECT_NEAR(r.positions[k], w.positions[k], 1e-6);
  }
  // The same seed gives the same UIDs; another gives others.
  const std::string d1 = qs::testing::temp_dir("dicom_uid1"), d2 = qs::testing::temp_dir("dicom_uid2");
  EXPECT_EQ(write_dicom_series(d1, v, {.uid_seed = 9}).sop_uids, write_dicom_series(d2, v, {.uid_seed = 9}).sop_uids);
  EXPECT_NE(write_dicom_series(d2, v, {.uid_seed = 10}).series_uid, write_dicom_series(d1, v, {.uid_seed = 9}).series_uid);
}

// Slices are ordered by position along the normal, not by file name; other files (an
// LIDC XML) are skipped; a folder with two series needs a choice.
TEST(Dicom, SortsByPositionSkipsOtherFilesAndChoosesASeries) {
  const std::string dir = qs::testing::temp_dir("dicom_sort");
  const Volume v = sample_volume();
  const DicomSeries w = write_dicom_series(dir, v, {.uid_seed = 1});
  // Reverse the file names: slice_0001 holds the top slice now.
  for (size_t k = 0; k < 5; ++k) fs::rename(w.files[k], dir + fmt::format("/tmp_{}", k));
  for (size_t k = 0; k < 5; ++k) fs::rename(dir + fmt::format("/tmp_{}", k), w.files[4 - k]);
  qs::testing::write_bytes(dir + "/069.xml", "<LidcReadMessage></LidcReadMessage>");
  DicomSeries r = read_dicom_series(dir);
  EXPECT_EQ(max_diff(r.volume.voxels, v.voxels), 0.0);
  EXPECT_EQ(r.sop_uids, w.sop_uids);
  const std::string other = qs::testing::temp_dir("dicom_sort_other");
  const DicomSeries w2 = write_dicom_series(other, sample_volume(3, 6, 7), {.uid_seed = 2});
  for (const std::string& f : w2.files) fs::copy_file(f, dir + "/b_" + fs::path(f).filename().string());
  const std::string e = error_of([&] { read_dicom_series(dir); });
  EXPECT_NE(e.find("holds 2 series"), std::string::npos) << e;
  r = read_dicom_series(dir, {.series_uid = w2.series_uid});
  EXPECT_EQ(r.volume.slices(), 3);
}

TEST(Dicom, BadSeriesAreClearErrors) {
  const Volume v = sample_volume();
  auto fresh = [&](const char* tag) {
    const std::string dir = qs::testing::temp_dir(std::string("dicom_bad_") + tag);
    return std::pair{dir, write_dicom_series(dir, v, {.uid_seed = 3})};
  };
  auto expect_error = [](const std::string& dir, const std::string& what) {
    const std::string e = error_of([&] { read_dicom_series(dir); });
    EXPECT_NE(e.find(what), std::string::npos) << "expected '" << what << "' in: " << e;
  };
  {  // a missing slice
    auto [dir, w] = fresh("missing");
    fs::remove(w.files[2]);
    expect_error(dir, "1 slice(s) missing");
  }
  {  // a duplicate: the same file twice
    auto [dir, w] = fresh("duplicate");
    fs::copy_file(w.files[2], dir + "/copy.dcm");
    expect_error(dir, "a duplicate slice");
  }
  {  // inconsistent spacing: one slice moved by 1 mm
    auto [dir, w] = fresh("spacing");
    edit_dicom(w.files[3], [](DcmDataset& ds) {
      Float64 z = 0;
      ds.findAndGetFloat64(DCM_ImagePositionPatient, z, 2);
      ds.putAndInsertString(DCM_ImagePositionPatient, fmt::format("0\\0\\{}", z + 1.0).c_str());
    });
    expect_error(dir, "inconsistent spacing");
  }
  {  // not CT
    auto [dir, w] = fresh("modality");
    for (const std::string& f : w.files) edit_dicom(f, [](DcmDataset& ds) { ds.putAndInsertString(DCM_Modality, "MR"); });
    expect_error(dir, "modality 'MR', not CT");
    EXPECT_EQ(read_dicom_series(dir, {.require_ct = false}).volume.modality, "MR");
  }
  {  // pixel data shorter than Rows x Columns x 2
    auto [dir, w] = fresh("short");
    edit_dicom(w.files[1], [](DcmDataset& ds) { ds.putAndInsertUint16(DCM_Rows, 60); });
    expect_error(dir, "60 x 7 pixels, ");  // the sizes disagree with the first slice
    for (const std::string& f : w.files) edit_dicom(f, [](DcmDataset& ds) { ds.putAndInsertUint16(DCM_Rows, 60); });
    expect_error(dir, "PixelData holds 84 bytes, Rows x Columns x BitsAllocated / 8 is 840");
  }
  {  // HighBit >= BitsAllocated
    auto [dir, w] = fresh("highbit");
    edit_dicom(w.files[0], [](DcmDataset& ds) { ds.putAndInsertUint16(DCM_HighBit, 16); });
    expect_error(dir, "HighBit 16 does not fit BitsAllocated 16");
  }
  {  // a required attribute missing
    auto [dir, w] = fresh("noipp");
    edit_dicom(w.files[0], [](DcmDataset& ds) { ds.findAndDeleteElement(DCM_ImagePositionPatient); });
    expect_error(dir, "ImagePositionPatient is missing");
  }
  {  // no DICOM at all
    const std::string dir = qs::testing::temp_dir("dicom_bad_empty");
    qs::testing::write_bytes(dir + "/a.txt", "hello");
    expect_error(dir, "no DICOM file");
  }
}

// A JPEG stream with a TEM marker (FF01) before its frame header: DCMTK 3.6.7's precision walk
// never steps over it and spun forever (fuzz_dicom). Refused before DCMTK decodes, both as the
// fuzzer's file (tests/malformed/) and as a valid JPEG Lossless series with TEM put after SOI.
TEST(Dicom, MalformedCatalogue) {
  auto expect_error = [](const std::string& dir, const std::string& what) {
    const std::string e = error_of([&] { read_dicom_series(dir); });
    EXPECT_NE(e.find(what), std::string::npos) << "expected '" << what << "' in: " << e;
  };
  {
    const std::string dir = qs::testing::temp_dir("dicom_malformed_tem");
    fs::copy_file(std::string(QS_SOURCE_DIR) + "/tests/malformed/dicom_jpeg_tem_before_sof_hang.dcm", dir + "/a.dcm");
    expect_error(dir, "a.dcm: its JPEG Lossless");
    expect_error(dir, "stream holds a TEM marker (FF01) before its frame header");
  }
  const std::string dir = qs::testing::temp_dir("dicom_jpeg_tem");
  const DicomSeries w = write_dicom_series(dir, sample_volume(), {.uid_seed = 5, .transfer_syntax = "jpeg-lossless"});
  // Bytes: PixelData (7FE0,0010) holds items (FFFE,E000): the offset table, then the first
  // fragment, whose data starts FFD8 (SOI). Put FF01 after SOI and make the item 2 bytes longer.
  std::string b = qs::testing::read_bytes(w.files[2]);
  const std::string item("\xFE\xFF\x00\xE0", 4), soi("\xFF\xD8", 2);
  auto u32_at = [&](size_t at) {
    uint32_t v = 0;
    std::memcpy(&v, b.data() + at, 4);
    return v;
  };
  const size_t table = b.find(item, b.find(std::string("\xE0\x7F\x10\x00", 4)));
  ASSERT_NE(table, std::string::npos);
  const size_t frag = table + 8 + u32_at(table + 4), data_at = frag + 8;
  ASSERT_EQ(b.substr(frag, 4), item);
  ASSERT_EQ(b.substr(data_at, 2), soi);
  const uint32_t len = u32_at(frag + 4) + 2;
  std::memcpy(b.data() + frag + 4, &len, 4);
  b.insert(data_at + 2, std::string("\xFF\x01", 2));
  qs::testing::write_bytes(w.files[2], b);
  expect_error(dir, "stream holds a TEM marker (FF01) before its frame header");
}

// ---- LIDC-IDRI annotations

namespace {

// A square outline of half-width r pixels around (c, r0) on slice k of the series.
LidcRoi outline(const DicomSeries& s, int64_t k, double col, double row, double r) {
  LidcRoi roi;
  roi.sop_uid = s.sop_uids[size_t(k)];
  roi.z = s.volume.world(col, row, double(k))[2];
  for (double t = -r; t <= r; t += 1) {
    roi.points.push_back({col + t, row - r});
    roi.points.push_back({col + t, row + r});
    roi.points.push_back({col - r, row + t});
    roi.points.push_back({col + r, row + t});
  }
  return roi;
}

LidcAnnotation marked(const DicomSeries& s, int session, const std::string& id, int malignancy, double col,
                      double row, int64_t k0, int64_t k1, double r) {
  LidcAnnotation a;
  a.session = session, a.reader = fmt::format("reader{}", session), a.nodule_id = id;
  a.has_characteristics = true;
  a.c.malignancy = malignancy, a.c.subtlety = 4, a.c.spiculation = malignancy > 3 ? 4 : 1;
  for (int64_t k = k0; k <= k1; ++k) a.rois.push_back(outline(s, k, col, row, r));
  return a;
}

}  // namespace

// A LIDC-like tree (patient / study / series, DICOM files and an XML): found, read, the
// nodules of four readers grouped into physical nodules and labelled by the mean-malignancy
// rule; the XML written and read back is the same.
TEST(Lidc, LikeTreeReadGroupedAndLabelled) {
  const std::string root = qs::testing::temp_dir("lidc_tree");
  const std::string dir = root + "/LIDC-IDRI-0001/01-01-2000-NA-30178/3000566.000000-NA-03192";
  Volume v = sample_volume(12, 40, 40);
  v.affine = axis_aligned({0.7, 0.7, 2.5}, {-150, -120, -300});
  DicomSeries s = write_dicom_series(dir, v, {.patient_id = "LIDC-IDRI-0001", .uid_seed = 5});
  LidcRead read;
  read.series_uid = s.series_uid, read.study_uid = s.study_uid, read.sessions = 4;
  // A: three readers, malignancy 4, 5, 4 -> 4.33 malignant. B: two readers, 2 and 3 -> 2.5
  // benign. C: two readers rating 3 -> excluded. Each reader's outline is a little off.
  read.annotations = {marked(s, 0, "A0", 4, 10, 10, 2, 4, 3), marked(s, 1, "A1", 5, 11, 10, 2, 5, 3),
                      marked(s, 2, "A2", 4, 10, 11, 3, 4, 2), marked(s, 0, "B0", 2, 30, 28, 7, 9, 2),
                      marked(s, 3, "B3", 3, 29, 28, 7, 8, 2), marked(s, 1, "C1", 3, 30, 10, 9, 10, 2),
                      marked(s, 2, "C2", 3, 30, 11, 9, 10, 2)};
  LidcAnnotation small;  // a nodule < 3 mm: one point, no characteristics
  small.session = 3, small.reader = "reader3", small.nodule_id = "small";
  small.rois.push_back({s.volume.world(20, 20, 5)[2], s.sop_uids[5], true, {{20, 20}}});
  read.annotations.push_back(small);
  read.non_nodules.push_back({1, "nn1", s.sop_uids[6], s.volume.world(5, 35, 6)[2], 5, 35});
  write_lidc_xml(dir + "/069.xml", read);
  qs::testing::write_bytes(root + "/notes.xml", "<other/>");

  const std::vector<LidcCase> cases = find_lidc_cases(root);
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].dir, dir);
  const DicomSeries ct = read_dicom_series(cases[0].dir);  // the XML beside the slices is skipped
  EXPECT_EQ(ct.patient_id, "LIDC-IDRI-0001");
  const LidcRead back = read_lidc_xml(cases[0].xml);
  EXPECT_EQ(back.series_uid, s.series_uid);
  EXPECT_EQ(back.sessions, 4);
  ASSERT_EQ(back.annotations.size(), 8u);
  std::map<std::string, const LidcAnnotation*> by_id;  // the file holds them session by session
  for (const LidcAnnotation& an : back.annotations) by_id[an.nodule_id] = &an;
  ASSERT_EQ(by_id.size(), 8u);
  EXPECT_EQ(by_id.at("A1")->reader, "reader1");
  EXPECT_EQ(by_id.at("A1")->session, 1);
  EXPECT_EQ(by_id.at("A1")->c.malignancy, 5);
  EXPECT_EQ(by_id.at("A1")->c.spiculation, 4);
  EXPECT_EQ(by_id.at("A1")->rois.size(), 4u);
  EXPECT_EQ(by_id.at("A1")->rois[0].points, read.annotations[1].rois[0].points);
  EXPECT_EQ(by_id.at("A1")->rois[0].sop_uid, s.sop_uids[2]);
  EXPECT_FALSE(by_id.at("small")->has_characteristics);
  ASSERT_EQ(back.non_nodules.size(), 1u);
  EXPECT_EQ(back.non_nodules[0].column, 5);

  const std::vector<LidcNodule> nodules = group_nodules(back, ct);
  ASSERT_EQ(nodules.size(), 3u);  // the small nodule is not one of them
  std::map<int, const LidcNodule*> by_size;
  for (const LidcNodule& n : nodules) by_size[int(n.annotations.size()) * 10 + int(n.centre[1] > 20)] = &n;
  const LidcNodule& a = *by_size.at(30);
  EXPECT_NEAR(a.mean_malignancy, 13.0 / 3, 1e-12);
  EXPECT_EQ(label(a), 1);
  EXPECT_NEAR(a.centre[0], 10.33, 0.1);
  EXPECT_NEAR(a.centre[2], 3.6, 0.3);
  const auto w = ct.volume.world(a.centre[0], a.centre[1], a.centre[2]);
  for (size_t d = 0; d < 3; ++d) EXPECT_NEAR(a.centre_mm[d], w[d], 1e-9);
  EXPECT_GT(a.diameter_mm, 2 * 3 * 0.7);
  const LidcNodule& b = *by_size.at(21);
  EXPECT_EQ(b.mean_malignancy, 2.5);
  EXPECT_EQ(label(b), 0);
  const LidcNodule& c = *by_size.at(20);
  EXPECT_EQ(label(c), -1);  // exactly 3: excluded
  EXPECT_EQ(label(c, {.malignant_above = 2.5}), 1);
  EXPECT_EQ(label(b, {.min_readers = 3}), -1);
  // Tight tolerance: the readers' outlines stay apart.
  EXPECT_GT(group_nodules(back, ct, 0.1).size(), 3u);
}

TEST(Lidc, BadXmlIsAClearError) {
  const std::string dir = qs::testing::temp_dir("lidc_bad");
  auto expect_error = [&](const std::string& name, const std::string& xml, const std::string& what) {
    qs::testing::write_bytes(dir + "/" + name, xml);
    const std::string e = error_of([&] { read_lidc_xml(dir + "/" + name); });
    EXPECT_NE(e.find(what), std::string::npos) << name << ": expected '" << what << "' in: " << e;
  };
  const std::string head = "<?xml version=\"1.0\"?>\n<LidcReadMessage xmlns=\"http://www.nih.gov\">\n";
  expect_error("xxe.xml",
               "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n"
               "<LidcReadMessage><readingSession><servicingRadiologistID>&xxe;</servicingRadiologistID>"
               "</readingSession></LidcReadMessage>",
               "xxe.xml:2: <!DOCTYPE declarations are refused");
  expect_error("unknown.xml", head + "<readingSession>\n<unblindedReadNodule><noduleID>1</noduleID>\n<sizeMM>4</sizeMM>"
               "</unblindedReadNodule></readingSession></LidcReadMessage>",
               "unknown.xml:5: unknown element <sizeMM> in <unblindedReadNodule>");
  expect_error("root.xml", "<IdriReadMessage/>", "not <LidcReadMessage>");
  expect_error("cxr.xml", head + "<CXRreadingSession/></LidcReadMessage>", "chest X-ray reading");
  expect_error("broken.xml", head + "<readingSession></LidcReadMessage>", "not well-formed XML");
  expect_error("rating.xml", head + "<readingSession><unblindedReadNodule><characteristics><malignancy>9</malignancy>"
               "</characteristics><roi/></unblindedReadNodule></readingSession></LidcReadMessage>",
               "<malignancy> rating 9 is not 1 to 6");
  expect_error("number.xml", head + "<readingSession><unblindedReadNodule><roi><imageZposition>-1x</imageZposition>"
               "</roi></unblindedReadNodule></readingSession></LidcReadMessage>",
               "<imageZposition> holds '-1x', not a number");
  expect_error("nosop.xml", head + "<readingSession><unblindedReadNodule><roi><imageZposition>1</imageZposition>"
               "<edgeMap><xCoord>1</xCoord><yCoord>2</yCoord></edgeMap></roi></unblindedReadNodule></readingSession>"
               "</LidcReadMessage>",
               "<roi> without an <imageSOP_UID>");
  // Unknown elements are skipped when asked.
  qs::testing::write_bytes(dir + "/lenient.xml", head + "<readingSession><extra>1</extra></readingSession></LidcReadMessage>");
  EXPECT_EQ(read_lidc_xml(dir + "/lenient.xml", {.strict = false}).sessions, 1);
  EXPECT_NE(error_of([&] { read_lidc_xml(dir + "/lenient.xml", {.max_bytes = 10}); }).find("over the limit"),
            std::string::npos);
}

// ---- preprocessing

// Trilinear resampling reproduces a function linear in world coordinates exactly, keeps the
// first voxel's position and the axes, and covers the old extent.
TEST(Preprocess, ResampleIsExactOnLinearFieldsAndKeepsTheGeometry) {
  Volume v = sample_volume(9, 11, 13);  // oblique, spacing 0.7 / 0.8 / 2.5
  auto field = [](const std::array<double, 3>& w) { return 0.5 * w[0] - 0.25 * w[1] + 0.125 * w[2] + 3; };
  float* p = v.voxels.data_ptr<float>();
  for (int64_t k = 0; k < 9; ++k)
    for (int64_t j = 0; j < 11; ++j)
      for (int64_t i = 0; i < 13; ++i) p[(k * 11 + j) * 13 + i] = float(field(v.world(double(i), double(j), double(k))));
  const Volume r = resample(v, {1.0, 1.0, 1.0});
  EXPECT_EQ(r.slices(), int64_t(std::floor(8 * 2.5 / 1.0)) + 1);
  EXPECT_EQ(r.rows(), int64_t(std::floor(10 * 0.8)) + 1);
  EXPECT_EQ(r.columns(), int64_t(std::floor(12 * 0.7)) + 1);
  const auto sp = r.spacing();
  for (double s : sp) EXPECT_NEAR(s, 1.0, 1e-12);
  const auto o0 = v.world(0, 0, 0), o1 = r.world(0, 0, 0);
  for (size_t d = 0; d < 3; ++d) EXPECT_NEAR(o0[d], o1[d], 1e-12);
  const float* q = r.voxels.data_ptr<float>();
  double worst = 0;
  for (int64_t k = 0; k < r.slices(); ++k)
    for (int64_t j = 0; j < r.rows(); ++j)
      for (int64_t i = 0; i < r.columns(); ++i)
        worst = std::max(worst, std::fabs(q[(k * r.rows() + j) * r.columns() + i] -
                                          field(r.world(double(i), double(j), double(k)))));
  EXPECT_LT(worst, 1e-4);
  EXPECT_NE(error_of([&] { resample(v, {0, 1, 1}); }).find("spacing 0"), std::string::npos);
}

TEST(Preprocess, WindowPatchAugmentAndSplits) {
  EXPECT_EQ(window(from_vector({-2000, -1000, -300, 400, 900}, {5}), -1000, 400).to_vector(),
            (std::vector<double>{0, 0, 0.5, 1, 1}));
  Volume v;
  v.voxels = arange(0, 4 * 5 * 6, 1, DType::f32).reshape({4, 5, 6});
  v.affine = axis_aligned({1, 1, 1});
  // Centre (i, j, k) = (1, 1, 1), a 3 x 3 x 3 block: from (0, 0, 0); reaching past the
  // volume's corner fills with air.
  Tensor p = extract_patch(v, {1, 1, 1}, {3, 3, 3});
  EXPECT_EQ(p.shape(), (Shape{3, 3, 3}));
  EXPECT_EQ(p.to_vector()[0], 0);
  EXPECT_EQ(p.to_vector()[13], (1 * 5 + 1) * 6 + 1);  // the centre voxel
  Tensor edge = extract_patch(v, {5, 4, 3}, {3, 3, 3});
  EXPECT_EQ(edge.to_vector()[26], -1024);  // (k, j, i) = (4, 5, 6): outside
  EXPECT_EQ(edge.to_vector()[13], (3 * 5 + 4) * 6 + 5);

  // Flips and quarter turns only move voxels: the same values, and deterministic per seed.
  Generator g1(4), g2(4);
  Tensor cube = arange(0, 64, 1, DType::f32).reshape({4, 4, 4});
  AugmentOptions geometric{.shift = 0, .intensity = 0, .noise = 0};
  Tensor a = augment(cube, g1, geometric), b = augment(cube, g2, geometric);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  std::vector<double> sorted = a.to_vector();
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, cube.to_vector());
  bool changed = false;
  for (int t = 0; t < 8 && !changed; ++t) changed = augment(cube, g1, geometric).to_vector() != cube.to_vector();
  EXPECT_TRUE(changed);
  Tensor jittered = augment(cube, g1, {.flips = false, .rotate90 = false, .shift = 0, .intensity = 0.1, .noise = 0});
  EXPECT_NE(jittered.to_vector(), cube.to_vector());
  EXPECT_NE(error_of([&] { augment(zeros({2, 3, 4}), g1); }).find("square axial plane"), std::string::npos);

  // Patients, not nodules, are split: every patient in exactly one split, the same split
  // for all its nodules, the same assignment for the same seed.
  std::vector<std::string> ids;
  for (int i = 0; i < 100; ++i) ids.push_back(fmt::format("P{:03}", i % 40));
  const auto s1 = split_patients(ids, {0.6, 0.2, 0.2}, 7), s2 = split_patients(ids, {0.6, 0.2, 0.2}, 7);
  EXPECT_EQ(s1, s2);
  ASSERT_EQ(s1.size(), 40u);
  int counts[3] = {0, 0, 0};
  for (auto& [id, s] : s1) ++counts[s];
  EXPECT_EQ(counts[0], 24);
  EXPECT_EQ(counts[1], 8);
  EXPECT_EQ(counts[2], 8);
  EXPECT_NE(split_patients(ids, {0.6, 0.2, 0.2}, 8), s1);
  EXPECT_NE(error_of([&] { split_patients(ids, {0.8, 0.4}, 1); }).find("over 1"), std::string::npos);
}

// ---- synthetic data

// The generator is deterministic and CT-like where it should be: air outside, fat and
// muscle in the body, parenchyma about -850 HU in the lungs, nodules denser than the lung.
TEST(Synth, CasesAreDeterministicAndCtLike) {
  SynthOptions o;
  o.slices = 24, o.rows = 64, o.columns = 64, o.pixel_mm = 2.0, o.seed = 3;
  const SynthCase a = synth_case(1, o), b = synth_case(1, o), c = synth_case(2, o);
  EXPECT_EQ(max_diff(a.volume.voxels, b.volume.voxels), 0.0);
  EXPECT_GT(max_diff(a.volume.voxels, c.volume.voxels), 0.0);
  EXPECT_EQ(a.patient_id, "LIDC-SYN-0002");
  const float* v = a.volume.voxels.data_ptr<float>();
  auto at = [&](double i, double j, double k) {
    return v[(int64_t(std::lround(k)) * 64 + int64_t(std::lround(j))) * 64 + int64_t(std::lround(i))];
  };
  EXPECT_LT(at(1, 1, 12), -900);   // air in the corner
  EXPECT_GT(at(32, 10, 12), -300);  // the body's front wall (fat, muscle or rib)
  double lung = 0;
  int n = 0;
  for (int j = 28; j < 36; ++j) lung += at(32 - 13.5, j, 5), ++n;  // inside the patient's right lung
  EXPECT_NEAR(lung / n, -850, 150);
  ASSERT_FALSE(a.nodules.empty());
  for (const SynthNodule& nd : a.nodules) {
    EXPECT_GT(at(nd.centre[0], nd.centre[1], nd.centre[2]), -700) << "nodule centre";
    EXPECT_GE(nd.diameter_mm, 4.0);
  }
  // Every nodule is marked by at least one reader, each reader at most once.
  for (size_t nd = 0; nd < a.nodules.size(); ++nd) {
    std::set<int> sessions;
    for (const LidcAnnotation& an : a.read.annotations)
      if (an.nodule_id == fmt::format("Nodule {}", nd + 1)) EXPECT_TRUE(sessions.insert(an.session).second);
    EXPECT_FALSE(sessions.empty());
  }
}

// A written data set goes back through the real readers: the LIDC-like tree is found, each
// series read from DICOM, its XML's nodules grouped into as many nodules as the generator
// made, at their centres; the NIfTI copy holds the same volume.
TEST(Synth, DatasetRunsThroughTheReaders) {
  const std::string dir = qs::testing::temp_dir("synth_dataset");
  SynthOptions o;
  o.slices = 24, o.rows = 64, o.columns = 64, o.pixel_mm = 2.0, o.seed = 5;
  const SynthSummary sum = write_synth_dataset(dir, 3, o, "rle");
  EXPECT_EQ(sum.cases, 3);
  EXPECT_EQ(sum.malignant + sum.benign + sum.excluded, sum.nodules);
  const std::vector<LidcCase> cases = find_lidc_cases(dir);
  ASSERT_EQ(cases.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const SynthCase truth = synth_case(i, o);
    const DicomSeries s = read_dicom_series(cases[size_t(i)].dir);
    EXPECT_EQ(s.patient_id, truth.patient_id);
    EXPECT_EQ(s.transfer_syntax, "RLE Lossless");
    EXPECT_LE(max_diff(s.volume.voxels, truth.volume.voxels), 0.5 + 1e-3);
    expect_affine_near(s.volume.affine, truth.volume.affine, 1e-6);
    const std::vector<LidcNodule> groups = group_nodules(read_lidc_xml(cases[size_t(i)].xml), s);
    ASSERT_EQ(groups.size(), truth.nodules.size()) << truth.patient_id;
    for (const SynthNodule& nd : truth.nodules) {
      double best = 1e9;
      for (const LidcNodule& g : groups) {
        double d2 = 0;
        for (size_t d = 0; d < 3; ++d) d2 += (g.centre[d] - nd.centre[d]) * (g.centre[d] - nd.centre[d]);
        best = std::min(best, std::sqrt(d2));
      }
      EXPECT_LT(best, 2.0) << truth.patient_id << ": a grouped nodule within 2 voxels of the truth";
    }
    const Volume nii = read_nifti(dir + "/nifti/" + truth.patient_id + ".nii.gz");
    EXPECT_LE(max_diff(nii.voxels, truth.volume.voxels), 0.5 + 1e-3);
    expect_affine_near(nii.affine, truth.volume.affine, 1e-6);
  }
  EXPECT_TRUE(fs::exists(dir + "/truth.json"));
}

// ---- the classification job

// From DICOM files to a test AUC with its interval: a small synthetic set, a short training,
// the checkpoint scored again by eval_ct.
TEST(CtTrain, PipelineFromDicomToAuc) {
  const std::string dir = qs::testing::temp_dir("ct_train");
  SynthOptions so;
  so.slices = 24, so.rows = 64, so.columns = 64, so.pixel_mm = 2.0, so.seed = 11;
  write_synth_dataset(dir + "/data", 30, so);
  TrainCtOptions o;
  o.data = dir + "/data", o.out = dir + "/run";
  o.model = {"fusion+gates", 4, 2, 16};
  o.data_options.patch = 16;  // 32 mm on 2 mm voxels
  o.epochs = 2, o.batch = 8, o.bootstrap = 100, o.quiet = true;
  const TrainCtResult r = train_ct(o);
  const CtDataset ds = build_ct_dataset(o.data, o.data_options);
  EXPECT_EQ(r.train + r.val + r.test, int(ds.samples.size()));
  EXPECT_EQ(ds.patches.shape(), (Shape{int64_t(ds.samples.size()), 1, 16, 16, 16}));
  EXPECT_GE(amin(ds.patches).item(), 0.0);
  EXPECT_LE(amax(ds.patches).item(), 1.0);
  EXPECT_EQ(r.val_auc.size(), 2u);
  EXPECT_GE(r.best_epoch, 1);
  EXPECT_LE(r.test_auc.lo, r.test_auc.auc);
  EXPECT_GE(r.test_auc.hi, r.test_auc.auc);
  EXPECT_GT(r.volumes_per_s, 0);
  EXPECT_TRUE(fs::exists(dir + "/run/report.json"));
  const EvalCtResult e1 = eval_ct(r.checkpoint, o.data, 100), e2 = eval_ct(r.checkpoint, o.data, 100);
  EXPECT_EQ(e1.nodules, int(ds.samples.size()));
  EXPECT_EQ(e1.scores, e2.scores);
  EXPECT_EQ(e1.auc.auc, metrics::roc_auc(e1.scores, e1.labels));
  EXPECT_FALSE(error_of([&] { eval_ct(dir + "/run/report.json", o.data); }).empty());  // not a checkpoint
  EXPECT_NE(error_of([&] { build_ct_dataset(dir + "/run"); }).find("no CT series with a LIDC annotation XML"),
            std::string::npos);
}
