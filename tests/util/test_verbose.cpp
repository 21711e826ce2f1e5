// QS_VERBOSE's topics: comma-separated whole words, blanks dropped.
#include <gtest/gtest.h>

#include "util/verbose.h"

namespace qs::util {
namespace {

using Topics = std::vector<std::string>;

TEST(Verbose, TopicsAreCommaSeparatedWholeWords) {
  EXPECT_EQ(parse_verbose_topics(nullptr), Topics{});
  EXPECT_EQ(parse_verbose_topics(""), Topics{});
  EXPECT_EQ(parse_verbose_topics("dispatch"), Topics{"dispatch"});
  EXPECT_EQ(parse_verbose_topics("dispatch,omp"), (Topics{"dispatch", "omp"}));
  EXPECT_EQ(parse_verbose_topics(" dispatch ,\tomp, ,"), (Topics{"dispatch", "omp"}));
  // Whole topics: "nodispatch" is not "dispatch" (the old substring tests said it was).
  EXPECT_EQ(parse_verbose_topics("nodispatch"), Topics{"nodispatch"});
}

TEST(Verbose, ReadsTheEnvironmentOnce) {
  // ctest runs this without QS_VERBOSE unless the environment sets it; either way the answer
  // is fixed by the first call.
  const bool first = verbose("dispatch");
  setenv("QS_VERBOSE", first ? "" : "dispatch", 1);
  EXPECT_EQ(verbose("dispatch"), first);
  EXPECT_FALSE(verbose("no-such-topic"));
}

}  // namespace
}  // namespace qs::util
