// The table of MPI calls that qiusuo's data-parallel layer makes, as a plain C ABI.
//
// MPI lives in a plugin, libqiusuo_mpi.so (src/dist/mpi_backend.cpp, linked against Open MPI),
// that src/dist/dist.cpp loads with dlopen only when qiusuo was started by an MPI launcher.
// qiusuo itself never links libmpi: it runs where no MPI is installed, and where a launcher
// started it but MPI cannot be loaded it says so by name instead of failing in the dynamic
// loader before main.
//
// Every call returns 0 on success or an MPI error code (describe it with error_string);
// they are made from one thread only, the communication thread of dist.cpp.
#pragma once
#include <cstdint>

extern "C" {

struct qs_mpi_api {
  int version;  // kQsMpiApiVersion of the plugin's build
  // MPI_Init_thread (MPI_THREAD_FUNNELED) with errors returned, not fatal. `what` receives
  // the MPI library's version string (truncated to `len`).
  int (*init)(char* what, int len);
  int (*rank)(int* rank);
  int (*size)(int* size);
  // In place, over MPI_COMM_WORLD; counts of any size (split into int-sized pieces).
  int (*allreduce_sum_f32)(float* buf, int64_t n);
  int (*allreduce_sum_f64)(double* buf, int64_t n);
  int (*allreduce_max_i64)(int64_t* buf, int64_t n);
  int (*allgather_u64)(uint64_t mine, uint64_t* all);  // all: one per rank
  int (*broadcast)(void* buf, int64_t bytes, int root);
  int (*barrier)();
  void (*abort)(int code);  // MPI_Abort(MPI_COMM_WORLD): ends every rank
  int (*finalize)();
  void (*error_string)(int code, char* out, int len);
};

// Bumped whenever the table changes: a stale plugin beside a newer qiusuo is refused.
enum { kQsMpiApiVersion = 1 };

// The plugin's one exported symbol.
const qs_mpi_api* qs_mpi_backend();
}
