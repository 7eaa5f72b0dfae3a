// The scratch folder of a fuzz process (fuzz_target.h): readers that take paths get the input
// through a file. One folder per process, made once and removed at exit, so concurrent fuzzers and
// replays never share files; /dev/shm when present, since a fuzzer rewrites it thousands of times
// a second.
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/fuzz/fuzz_target.h"

namespace kd {
namespace fuzz {
namespace {

struct Scratch {
  std::string path;
  Scratch() {
    const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    path = std::string(base) + "/kdlab-fuzz-XXXXXX";
    if (mkdtemp(path.data()) == nullptr) {
      std::perror("kdlab fuzz: mkdtemp");
      std::abort();
    }
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace

std::string scratch_dir() {
  static Scratch scratch;
  return scratch.path;
}

std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  out.close();
  if (!out) {  // the harness's own failure, not the target's: stop loudly
    std::fprintf(stderr, "kdlab fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

}  // namespace fuzz
}  // namespace kd
