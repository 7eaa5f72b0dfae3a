// Fuzz target: the CLI's value parsing (apps/cli.h): check_run_arguments, which parses
// `kdlab COMMAND ARGS...` with a fresh make_cli() parser and runs the checks train/distill/eval
// make before reading data. The input is lines: the command, then one argument per line.
#include "apps/cli.h"
#include "tests/fuzz/fuzz_target.h"

KD_FUZZ_TARGET(cli) {
  std::vector<std::string> lines(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\n') lines.emplace_back();
    else lines.back() += char(data[i]);
  }
  const std::string command = lines.front();
  lines.erase(lines.begin());
  kd::apps::check_run_arguments(command, lines, "fuzz");
}
