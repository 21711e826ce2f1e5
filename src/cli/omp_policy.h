// The OpenMP wait policy for the command line on a busy machine (see omp_policy.cpp).
#pragma once

namespace qs::cli {

// When OMP_WAIT_POLICY and GOMP_SPINCOUNT are unset, the 1-minute load average is at
// least the number of cores and another process has a thread runnable right now (the
// fewest of five reads of /proc/loadavg over 8 ms), re-executes this binary with
// OMP_WAIT_POLICY=passive (libgomp reads it only when loaded). QS_OMP_AUTO=0 never does,
// QS_OMP_AUTO=passive always does; QS_VERBOSE=omp says so on stderr. Returns when it does
// not re-execute.
void adapt_omp_wait_policy(char** argv);

// The decision: load_1min >= cores and others_now >= 1 (others_now < 0: unknown, the
// load average alone decides).
bool busy_for_openmp(double load_1min, double cores, int others_now);

}  // namespace qs::cli
