// The replay driver: `kdlab_fuzz_replay TARGET DIR...` runs the fuzz target TARGET (compiled in by
// KD_FUZZ_TARGET, see fuzz_target.h) on every file of each DIR, in name order. Built by the
// ordinary build (g++, no sanitizer needed), it is how `make test` guards the seed corpora and
// every input that once crashed (ctest: Fuzz.Replay.<target>). A file whose run throws anything
// but kd::InputError fails the replay, naming the file; a crash names it too, since each file is
// announced before it runs. The first DIR (the corpus) must hold files, so a lost corpus fails
// rather than passing empty; later DIRs (crashes) may be absent.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <vector>

#include "tests/fuzz/fuzz_target.h"

namespace kd {
namespace fuzz {

std::map<std::string, TargetFn>& targets() {
  static std::map<std::string, TargetFn> all;
  return all;
}

bool register_target(const char* name, TargetFn fn) {
  targets()[name] = fn;
  return true;
}

}  // namespace fuzz
}  // namespace kd

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  using kd::fuzz::targets;
  if (argc < 3 || targets().count(argv[1]) == 0) {
    std::fprintf(stderr, "usage: %s TARGET CORPUS_DIR [DIR...]; targets:", argv[0]);
    for (const auto& t : targets()) std::fprintf(stderr, " %s", t.first.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  const kd::fuzz::TargetFn fn = targets()[argv[1]];
  int files = 0, failures = 0;
  for (int d = 2; d < argc; ++d) {
    std::error_code ec;
    if (!fs::is_directory(argv[d], ec)) {
      if (d == 2) {
        std::fprintf(stderr, "replay %s: corpus folder %s is missing\n", argv[1], argv[d]);
        return 1;
      }
      continue;
    }
    std::vector<fs::path> paths;
    for (const auto& e : fs::directory_iterator(argv[d]))
      if (e.is_regular_file() && e.path().filename().string()[0] != '.') paths.push_back(e.path());
    std::sort(paths.begin(), paths.end());
    if (d == 2 && paths.empty()) {
      std::fprintf(stderr, "replay %s: corpus folder %s is empty\n", argv[1], argv[d]);
      return 1;
    }
    for (const fs::path& p : paths) {
      std::ifstream in(p, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), {});
      std::fprintf(stderr, "replay %s: %s\n", argv[1], p.c_str());
      try {
        kd::fuzz::run_target(fn, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "FAILED %s: %s\n", p.c_str(), e.what());
        ++failures;
      }
      ++files;
    }
  }
  std::printf("replay %s: %d files, %d failed\n", argv[1], files, failures);
  return failures == 0 ? 0 : 1;
}
