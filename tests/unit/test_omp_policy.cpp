// The command line's OpenMP wait-policy decision (src/cli/omp_policy.cpp): passive only
// when the 1-minute load average says the cores are taken AND another process has a
// thread runnable now; the lagging average alone (a benchmark that just ended) is not enough.
#include <gtest/gtest.h>

#include "cli/omp_policy.h"

namespace qs::cli {
namespace {

TEST(OmpPolicy, PassiveOnlyWhileOthersRunNow) {
  EXPECT_FALSE(busy_for_openmp(1.2, 2, 3));  // quiet on average
  EXPECT_FALSE(busy_for_openmp(2.4, 2, 0));  // the average lags: nobody else runnable now
  EXPECT_TRUE(busy_for_openmp(2.4, 2, 1));
  EXPECT_TRUE(busy_for_openmp(9.0, 2, 4));   // other engineers' builds
  EXPECT_TRUE(busy_for_openmp(2.0, 2, -1));  // /proc/loadavg unreadable: the average decides
  EXPECT_FALSE(busy_for_openmp(5.0, 0, 4));  // unknown core count: keep libgomp's default
}

}  // namespace
}  // namespace qs::cli
