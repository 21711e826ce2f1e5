// libqiusuo_mpi.so: the MPI calls of src/dist/mpi_api.h on Open MPI (Debian libopenmpi-dev).
// Loaded by src/dist/dist.cpp only under an MPI launcher; see mpi_api.h for why a plugin.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "dist/mpi_api.h"

namespace {

// MPI counts are int: longer buffers go in pieces.
constexpr int64_t kPiece = int64_t(1) << 30;

template <typename T>
int allreduce(T* buf, int64_t n, MPI_Datatype type, MPI_Op op) {
  for (int64_t at = 0; at < n; at += kPiece) {
    int count = int(std::min(kPiece, n - at));
    if (int rc = MPI_Allreduce(MPI_IN_PLACE, buf + at, count, type, op, MPI_COMM_WORLD)) return rc;
  }
  return MPI_SUCCESS;
}

int init(char* what, int len) {
  int provided = 0;
  int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) return rc;
  // Errors come back as codes (turned into messages by dist.cpp), not as MPI's default abort.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int vlen = 0;
  MPI_Get_library_version(version, &vlen);
  if (what && len > 0) {
    std::strncpy(what, version, size_t(len - 1));
    what[len - 1] = 0;
  }
  return MPI_SUCCESS;
}

int rank(int* r) { return MPI_Comm_rank(MPI_COMM_WORLD, r); }
int size(int* s) { return MPI_Comm_size(MPI_COMM_WORLD, s); }
int allreduce_sum_f32(float* buf, int64_t n) { return allreduce(buf, n, MPI_FLOAT, MPI_SUM); }
int allreduce_sum_f64(double* buf, int64_t n) { return allreduce(buf, n, MPI_DOUBLE, MPI_SUM); }
int allreduce_max_i64(int64_t* buf, int64_t n) { return allreduce(buf, n, MPI_INT64_T, MPI_MAX); }
int allgather_u64(uint64_t mine, uint64_t* all) {
  return MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
}
int broadcast(void* buf, int64_t bytes, int root) {
  char* p = static_cast<char*>(buf);
  for (int64_t at = 0; at < bytes; at += kPiece) {
    int count = int(std::min(kPiece, bytes - at));
    if (int rc = MPI_Bcast(p + at, count, MPI_BYTE, root, MPI_COMM_WORLD)) return rc;
  }
  return MPI_SUCCESS;
}
int barrier() { return MPI_Barrier(MPI_COMM_WORLD); }
void abort_all(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
int finalize() { return MPI_Finalize(); }
void error_string(int code, char* out, int len) {
  char s[MPI_MAX_ERROR_STRING] = {0};
  int n = 0;
  if (MPI_Error_string(code, s, &n) != MPI_SUCCESS) std::strcpy(s, "unknown MPI error");
  if (out && len > 0) {
    std::strncpy(out, s, size_t(len - 1));
    out[len - 1] = 0;
  }
}

const qs_mpi_api kApi = {kQsMpiApiVersion, init,    rank,    size,     allreduce_sum_f32, allreduce_sum_f64,
                         allreduce_max_i64, allgather_u64, broadcast, barrier, abort_all, finalize, error_string};

}  // namespace

extern "C" __attribute__((visibility("default"))) const qs_mpi_api* qs_mpi_backend() { return &kApi; }
