// qiusuo: one binary; the verbs are listed in commands.cpp and implemented in the cmd_*.cpp files
// (a file may hold a family of verbs: cmd_lm.cpp has train lm, eval lm and generate).
#include <cstring>
#include <iostream>

#include "cli/cli.h"
#include "cli/omp_policy.h"

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
    return run_guarded([&] { return c.run(Args(argc - 2, argv + 2)); });
  }
  std::cerr << "qiusuo: unknown command '" << verb << "'\n";
  print_usage(std::cerr);
  return kExitUsage;
}
