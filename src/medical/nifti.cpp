// NIfTI-1/2 through libnifti2 (include/qiusuo/medical/nifti.h): libnifti parses the header;
// the voxels are read here through zlib (which reads plain files as they are), in chunks,
// so that no buffer of the declared size exists before the data does.
#include "qiusuo/medical/nifti.h"

#include <nifti2_io.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <vector>

#include "io/atomic_file.h"
#include "qiusuo/error.h"

namespace qs::medical {

namespace {

struct NimFree {
  void operator()(nifti_image* n) const { nifti_image_free(n); }
};
using Nim = std::unique_ptr<nifti_image, NimFree>;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The bytes [offset, offset + n) of a plain or gzip file, read in chunks; fewer when the
// file ends first (the caller reports it).
std::vector<uint8_t> read_bytes(const std::string& path, int64_t offset, int64_t n) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw IOError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::vector<uint8_t> out;
  auto fail = [&](const char* what) {
    int code = 0;
    std::string msg = gzerror(f, &code);
    gzclose(f);
    throw IOError(fmt::format("{}: {}: {}", path, what, msg));
  };
  if (offset > 0 && gzseek(f, z_off_t(offset), SEEK_SET) != z_off_t(offset)) {
    gzclose(f);
    return out;  // shorter than the header's data offset
  }
  constexpr int64_t kChunk = int64_t(1) << 24;
  while (int64_t(out.size()) < n) {
    const int64_t want = std::min(kChunk, n - int64_t(out.size()));
    const size_t at = out.size();
    out.resize(at + size_t(want));
    const int got = gzread(f, out.data() + at, unsigned(want));
    if (got < 0) fail("reading the voxel data failed");
    out.resize(at + size_t(got));
    if (got < want) break;
  }
  gzclose(f);
  return out;
}

template <typename T>
void widen(const uint8_t* src, int64_t n, float* dst, double slope, double inter) {
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * int64_t(sizeof(T)), sizeof(T));
    dst[i] = float(double(v) * slope + inter);
  }
}

Affine from(const nifti_dmat44& m) {
  Affine a{};
  for (size_t r = 0; r < 4; ++r)
    for (size_t c = 0; c < 4; ++c) a[r][c] = m.m[r][c];
  return a;
}

nifti_dmat44 to(const Affine& a) {
  nifti_dmat44 m;
  for (size_t r = 0; r < 4; ++r)
    for (size_t c = 0; c < 4; ++c) m.m[r][c] = a[r][c];
  return m;
}

double det3(const Affine& a) {
  return a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
         a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
}

// The header's fields that libnifti trusts, checked before it parses them: libnifti2 3.0.1
// overflows its stack on a NIfTI-2 header whose dim[0] is huge (found by fuzz_nifti), so a
// header reaches it only with a sane size, dim[0] in 1..7, dims >= 1, a known datatype and a
// data offset that the file can hold. Returns the version (1 or 2).
int check_header(const std::string& path) {
  const std::vector<uint8_t> h = read_bytes(path, 0, 540);
  auto get = [&](size_t off, size_t n, bool swap) {
    uint64_t v = 0;
    if (off + n > h.size()) throw IOError(fmt::format("{}: the header is truncated ({} bytes)", path, h.size()));
    for (size_t i = 0; i < n; ++i) v |= uint64_t(h[off + (swap ? n - 1 - i : i)]) << (8 * i);
    return v;
  };
  if (h.size() < 4) throw IOError(fmt::format("{}: not a NIfTI-1 or NIfTI-2 file ({} bytes)", path, h.size()));
  const uint32_t size = uint32_t(get(0, 4, false)), swapped = __builtin_bswap32(size);
  const bool swap = size != 348 && size != 540;
  const uint32_t hs = swap ? swapped : size;
  if (hs != 348 && hs != 540)
    throw IOError(fmt::format("{}: not a NIfTI-1 or NIfTI-2 file (header size field {})", path, size));
  const bool v2 = hs == 540;
  const int64_t ndim = v2 ? int64_t(get(16, 8, swap)) : int16_t(get(40, 2, swap));
  if (ndim < 1 || ndim > 7) throw IOError(fmt::format("{}: the header declares {} dimensions", path, ndim));
  for (int64_t d = 1; d <= ndim; ++d) {
    const int64_t n = v2 ? int64_t(get(16 + 8 * size_t(d), 8, swap)) : int16_t(get(40 + 2 * size_t(d), 2, swap));
    if (n < 1) throw IOError(fmt::format("{}: dimension {} is {}", path, d, n));
  }
  const int dt = int16_t(get(v2 ? 12 : 70, 2, swap));
  int nbyper = 0, swapsize = 0;
  nifti_datatype_sizes(dt, &nbyper, &swapsize);
  if (nbyper <= 0) throw IOError(fmt::format("{}: unknown datatype {}", path, dt));
  double offset = 0;
  if (v2) {
    const int64_t off = int64_t(get(168, 8, swap));
    if (off < 0) throw IOError(fmt::format("{}: negative data offset {}", path, off));
    offset = double(off);
  } else {
    uint32_t bits = uint32_t(get(108, 4, swap));
    float off = 0;
    std::memcpy(&off, &bits, 4);
    if (!std::isfinite(off) || off < 0) throw IOError(fmt::format("{}: data offset {} is not a byte position", path, off));
    offset = off;
  }
  // In a one-file NIfTI ("n+1" / "n+2") libnifti reads the extensions between the header and
  // the data offset, and allocates each extension's declared size (up to 2 GB) before reading
  // it; the only bound it applies is the data offset. So the offset must lie within the file
  // (within what deflate can expand the file to, for .gz) before libnifti sees it
  // (fuzz_nifti's second finding: a 1.2 GB allocation for a file of a few hundred bytes).
  const bool one_file = get(v2 ? 5 : 345, 1, false) == '+';
  if (one_file) {
    std::error_code ec;
    const double file_bytes = double(std::filesystem::file_size(path, ec));
    if (ec) throw IOError(fmt::format("{}: cannot read its size: {}", path, ec.message()));
    const bool gz = ends_with(path, ".gz");
    if (!gz && offset > file_bytes)
      throw IOError(fmt::format("{}: the data offset {:.0f} is past the end of the file ({:.0f} bytes)", path, offset,
                                file_bytes));
    if (gz && offset > 1032.0 * file_bytes + 1024)
      throw IOError(fmt::format("{}: the data offset {:.0f} is past what a {:.0f}-byte gzip file can hold", path,
                                offset, file_bytes));
  }
  return v2 ? 2 : 1;
}

}  // namespace

Volume read_nifti(const std::string& path, NiftiInfo* info, int64_t max_voxels) {
  nifti_set_debug_level(0);  // errors are reported here, not on stderr
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw IOError(fmt::format("{}: no such file", path));
  const int version = check_header(path);
  Nim nim(nifti_image_read(path.c_str(), 0));
  if (!nim) throw IOError(fmt::format("{}: not a NIfTI-1 or NIfTI-2 file (or its header is damaged)", path));
  NiftiInfo inf;
  if (nim->nifti_type == NIFTI_FTYPE_ANALYZE)
    throw IOError(fmt::format("{}: an ANALYZE 7.5 header, not NIfTI (no orientation to trust)", path));
  // The version is the header's size (libnifti's nifti_type says one file or two, not which).
  inf.version = version;
  const int64_t ndim = nim->dim[0];
  if (ndim < 2 || ndim > 7) throw IOError(fmt::format("{}: the header declares {} dimensions", path, ndim));
  for (int64_t d = 1; d <= ndim; ++d)
    if (nim->dim[d] <= 0) throw IOError(fmt::format("{}: dimension {} is {}", path, d, int64_t(nim->dim[d])));
  for (int64_t d = 4; d <= ndim; ++d)
    if (nim->dim[d] != 1)
      throw IOError(fmt::format("{}: dimension {} is {}: one 3D volume is read (split 4D series first)", path, d,
                                int64_t(nim->dim[d])));
  const int64_t nx = nim->dim[1], ny = nim->dim[2], nz = ndim >= 3 ? int64_t(nim->dim[3]) : 1;
  if (nx > max_voxels || ny > max_voxels || nz > max_voxels || nx * ny > max_voxels || nx * ny * nz > max_voxels)
    throw IOError(fmt::format("{}: the header declares {} x {} x {} voxels, over the limit of {}", path, nx, ny, nz,
                              max_voxels));
  const int64_t nvox = nx * ny * nz;
  inf.datatype = nim->datatype;
  int nbyper = 0, swapsize = 0;
  nifti_datatype_sizes(nim->datatype, &nbyper, &swapsize);
  switch (nim->datatype) {
    case DT_UINT8: case DT_INT8: case DT_UINT16: case DT_INT16: case DT_INT32: case DT_FLOAT32: case DT_FLOAT64: break;
    default:
      throw IOError(fmt::format("{}: datatype {} ({}) is not read (u8, i8, u16, i16, i32, f32, f64)", path,
                                nim->datatype, nifti_datatype_string(nim->datatype)));
  }
  const int64_t offset = nim->iname_offset, bytes = nvox * nbyper;
  if (offset < 0) throw IOError(fmt::format("{}: negative data offset {}", path, offset));
  const std::string data_path = nim->iname ? nim->iname : path;
  const int64_t file_bytes = int64_t(std::filesystem::file_size(data_path, ec));
  const bool gz = ends_with(data_path, ".gz");
  // Deflate cannot expand data more than about 1032 times: a larger claim is a lie, refused
  // before any read. The chunked read below catches the rest.
  if (!gz && file_bytes < offset + bytes)
    throw IOError(fmt::format("{}: the header declares {} bytes of voxels at offset {}, the file holds {} bytes",
                              data_path, bytes, offset, file_bytes));
  if (gz && double(offset + bytes) > 1032.0 * double(file_bytes) + 1024)
    throw IOError(fmt::format("{}: the header declares {} bytes of voxels, more than a {}-byte gzip file can hold",
                              data_path, bytes, file_bytes));
  std::vector<uint8_t> raw = read_bytes(data_path, offset, bytes);
  if (int64_t(raw.size()) < bytes)
    throw IOError(fmt::format("{}: the header declares {} bytes of voxels at offset {}, the {} holds {}", data_path,
                              bytes, offset, gz ? "gzip stream" : "file", raw.size()));
  if (swapsize > 1 && nim->byteorder != nifti_short_order()) nifti_swap_Nbytes(nvox, swapsize, raw.data());

  inf.scl_slope = 1, inf.scl_inter = 0;
  if (nim->scl_slope != 0 && std::isfinite(nim->scl_slope) && std::isfinite(nim->scl_inter))
    inf.scl_slope = nim->scl_slope, inf.scl_inter = nim->scl_inter;
  Volume v;
  v.voxels = empty({nz, ny, nx}, DType::f32);
  float* dst = v.voxels.data_ptr<float>();
  const double a = inf.scl_slope, b = inf.scl_inter;
  switch (nim->datatype) {
    case DT_UINT8: widen<uint8_t>(raw.data(), nvox, dst, a, b); break;
    case DT_INT8: widen<int8_t>(raw.data(), nvox, dst, a, b); break;
    case DT_UINT16: widen<uint16_t>(raw.data(), nvox, dst, a, b); break;
    case DT_INT16: widen<int16_t>(raw.data(), nvox, dst, a, b); break;
    case DT_INT32: widen<int32_t>(raw.data(), nvox, dst, a, b); break;
    case DT_FLOAT32: widen<float>(raw.data(), nvox, dst, a, b); break;
    default: widen<double>(raw.data(), nvox, dst, a, b); break;
  }

  inf.qform_code = nim->qform_code, inf.sform_code = nim->sform_code;
  if (nim->sform_code > 0) {
    v.affine = from(nim->sto_xyz), inf.orientation = "sform";
  } else if (nim->qform_code > 0) {
    v.affine = from(nim->qto_xyz), inf.orientation = "qform";
  } else {
    v.affine = axis_aligned({std::fabs(nim->dx), std::fabs(nim->dy), ndim >= 3 ? std::fabs(nim->dz) : 1.0});
    inf.orientation = "pixdim";
  }
  for (auto& row : v.affine)
    for (double x : row)
      if (!std::isfinite(x)) throw IOError(fmt::format("{}: the {} holds a non-finite value", path, inf.orientation));
  if (std::fabs(det3(v.affine)) < 1e-12)
    throw IOError(fmt::format("{}: the {} is singular (a zero voxel size?)", path, inf.orientation));
  if (info) *info = inf;
  return v;
}

void write_nifti(const std::string& path, const Volume& v, const NiftiWriteOptions& opt) {
  nifti_set_debug_level(0);
  const bool gz = ends_with(path, ".nii.gz");
  QS_CHECK(gz || ends_with(path, ".nii"), "write_nifti: {}: the name must end in .nii or .nii.gz", path);
  QS_CHECK(opt.version == 1 || opt.version == 2, "write_nifti: version must be 1 or 2, got {}", opt.version);
  QS_CHECK(v.voxels.defined() && v.voxels.dim() == 3 && v.voxels.dtype() == DType::f32,
           "write_nifti: {}: voxels must be f32 [slices, rows, columns]", path);
  QS_CHECK(std::fabs(det3(v.affine)) > 1e-12, "write_nifti: {}: the affine is singular", path);
  const Tensor x = v.voxels.contiguous();
  const int64_t nz = x.size(0), ny = x.size(1), nx = x.size(2), n = x.numel();
  const float* src = x.data_ptr<float>();
  std::vector<uint8_t> data(size_t(n) * (opt.int16 ? 2 : 4));
  if (opt.int16) {
    auto* d = reinterpret_cast<int16_t*>(data.data());
    for (int64_t i = 0; i < n; ++i)
      d[i] = int16_t(std::lround(std::clamp(double(src[i]), -32768.0, 32767.0)));
  } else {
    std::memcpy(data.data(), src, data.size());
  }
  int64_t dims[8] = {3, nx, ny, nz, 1, 1, 1, 1};
  Nim nim(nifti_make_new_nim(dims, opt.int16 ? DT_INT16 : DT_FLOAT32, 0));
  if (!nim) throw IOError(fmt::format("{}: libnifti could not make an image header", path));
  const std::array<double, 3> sp = v.spacing();
  nim->dx = nim->pixdim[1] = sp[0], nim->dy = nim->pixdim[2] = sp[1], nim->dz = nim->pixdim[3] = sp[2];
  nim->xyz_units = NIFTI_UNITS_MM;
  const nifti_dmat44 m = to(v.affine);
  nim->sto_xyz = m, nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  nim->sto_ijk = nifti_dmat44_inverse(m);
  double dx = 0, dy = 0, dz = 0;
  nifti_dmat44_to_quatern(m, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d, &nim->qoffset_x, &nim->qoffset_y,
                          &nim->qoffset_z, &dx, &dy, &dz, &nim->qfac);
  nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
  nim->qto_xyz = nifti_quatern_to_dmat44(nim->quatern_b, nim->quatern_c, nim->quatern_d, nim->qoffset_x,
                                         nim->qoffset_y, nim->qoffset_z, nim->dx, nim->dy, nim->dz, nim->qfac);
  nim->qto_ijk = nifti_dmat44_inverse(nim->qto_xyz);
  // The header from libnifti's own conversion; the file written here (nifti_image_write
  // reports no errors, and its NIfTI-2 single-file path writes the data over the header).
  nim->nifti_type = opt.version == 2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
  nim->iname_offset = opt.version == 2 ? 544 : 352;  // header, then 4 bytes: no extensions
  std::string bytes;
  if (opt.version == 2) {
    nifti_2_header h;
    if (nifti_convert_nim2n2hdr(nim.get(), &h) != 0) throw IOError(fmt::format("{}: libnifti could not make a header", path));
    bytes.assign(reinterpret_cast<const char*>(&h), sizeof h);
  } else {
    nifti_1_header h;
    if (nifti_convert_nim2n1hdr(nim.get(), &h) != 0) throw IOError(fmt::format("{}: libnifti could not make a header", path));
    bytes.assign(reinterpret_cast<const char*>(&h), sizeof h);
  }
  bytes.append(4, '\0');
  QS_CHECK(int64_t(bytes.size()) == nim->iname_offset, "write_nifti: header of {} bytes, expected {}", bytes.size(),
           nim->iname_offset);
  bytes.append(reinterpret_cast<const char*>(data.data()), data.size());
  if (gz) {
    z_stream z{};
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      throw IOError(fmt::format("{}: zlib could not start a gzip stream", path));
    std::string out(deflateBound(&z, uLong(bytes.size())) + 32, '\0');
    z.next_in = reinterpret_cast<Bytef*>(bytes.data()), z.avail_in = uInt(bytes.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data()), z.avail_out = uInt(out.size());
    const int rc = deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) throw IOError(fmt::format("{}: gzip compression failed", path));
    bytes.swap(out);
  }
  io::write_file_atomic(path, bytes);
}

}  // namespace qs::medical
