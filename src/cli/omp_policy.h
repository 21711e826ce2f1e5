// The OpenMP wait policy for the command line on a busy machine (see omp_policy.cpp).
#pragma once

namespace qs::cli {

// When OMP_WAIT_POLICY and GOMP_SPINCOUNT are unset and the 1-minute load average is at
// least the number of cores, re-executes this binary with OMP_WAIT_POLICY=passive (libgomp
// reads it only when loaded). QS_OMP_AUTO=0 never does, QS_OMP_AUTO=passive always does;
// QS_VERBOSE=omp says so on stderr. Returns when it does not re-execute.
void adapt_omp_wait_policy(char** argv);

}  // namespace qs::cli
