// QS_VERBOSE: diagnostics on stderr, chosen by comma-separated topics (QS_VERBOSE=dispatch,omp):
//   dispatch  each op's kernel and why the others declined; oneDNN's implementation choices
//   omp       the CLI switching OpenMP to passive waiting (cli/omp_policy.h)
// Usable from every layer (ops, kernels, backend, cli): it depends on nothing of qiusuo.
#pragma once
#include <string>
#include <vector>

namespace qs::util {

// Whether `topic` is one of QS_VERBOSE's topics. The variable is read and split once, at the
// first call from any thread; later changes to the environment are not seen.
bool verbose(const char* topic);

// The topics of a QS_VERBOSE value: split at commas, blanks around each topic dropped, empty
// topics skipped ("dispatch, omp" -> {"dispatch", "omp"}; null -> {}). An unknown topic
// turns nothing on.
std::vector<std::string> parse_verbose_topics(const char* value);

}  // namespace qs::util
