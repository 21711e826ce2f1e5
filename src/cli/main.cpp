// qiusuo: one binary; the verbs are listed in commands.cpp and implemented in the cmd_*.cpp files
// (a file may hold a family of verbs: cmd_lm.cpp has train lm, eval lm and generate).
#include <cstring>
#include <iostream>

#include "cli/cli.h"
#include "cli/omp_policy.h"
#include "qiusuo/dist/dist.h"

namespace {

// Under `mpirun`: MPI is set up before the verb runs. Only rank 0 writes to stdout (the
// others' results are the same); errors from any rank name it. A verb that fails on one
// rank ends every rank (MPI_Abort), so that none waits for it; one that succeeds meets
// the others in MPI_Finalize.
int run_verb(const qs::cli::Command& c, int argc, char** argv) {
  using namespace qs::cli;
  const qs::dist::Launch launch = qs::dist::detect_launch();
  if (!launch.by_launcher) return run_guarded([&] { return c.run(Args(argc - 2, argv + 2)); });
  const std::string program = fmt::format("qiusuo (rank {} of {})", launch.rank, launch.size);
  int rc = run_guarded([&] {
    qs::dist::init();
    if (!qs::dist::is_main()) std::cout.setstate(std::ios::failbit);
    return c.run(Args(argc - 2, argv + 2));
  }, program.c_str());
  if (rc != kExitOk && qs::dist::active()) qs::dist::abort_job(rc);
  try {
    qs::dist::finalize();
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
    return kExitCheckFailed;
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace qs::cli;
  adapt_omp_wait_policy(argv);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_usage(std::cout);
    return argc < 2 ? kExitUsage : kExitOk;
  }
  std::string verb = argv[1];
  for (const Command& c : commands()) {
    if (verb != c.name) continue;
    for (int i = 2; i < argc; ++i)
      if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
        std::cout << c.usage;
        return kExitOk;
      }
    return run_verb(c, argc, argv);
  }
  std::cerr << "qiusuo: unknown command '" << verb << "'\n";
  print_usage(std::cerr);
  return kExitUsage;
}
