// Helpers for the tests that drive the real kdlab binary (test_cli.cpp, test_training.cpp): a
// self-deleting temp directory, running KDLAB_BINARY as a child process with its stdout and
// stderr captured, small file utilities, and a tiny Fashion-MNIST-format data folder cut from
// the real files so CLI runs read real images without paying for 60k of them.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <csignal>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/philox.h"
#include "data/dataset.h"

#ifndef KDLAB_BINARY
#error "KDLAB_BINARY (the path of the built kdlab) must be defined by the build"
#endif

namespace kd {
namespace cli_testing {

namespace fs = std::filesystem;

inline const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

inline bool have_fashion_mnist() {
  for (const char* f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
    if (!fs::exists(fs::path(kFashionMnistDir) / f)) return false;
  return true;
}

struct TempDir {
  std::string path;
  TempDir() {
    path = (fs::temp_directory_path() / "kdlab-cli-XXXXXX").string();
    if (mkdtemp(path.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (fs::path(path) / name).string(); }
};

struct RunResult {
  int code = -1;  // exit status; 128 + signal when killed by one
  std::string out, err;
  double seconds = 0;
  long peak_rss_kb = 0;    // the child's peak resident memory (run_kdlab_bounded only)
  bool timed_out = false;  // killed at its deadline (run_kdlab_bounded only)
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// A kdlab process started in the background (spawn_kdlab), finished by wait_kdlab.
struct Spawned {
  pid_t pid = -1;
  std::unique_ptr<TempDir> io;  // its stdout and stderr files
  std::chrono::steady_clock::time_point start;
};

// Starts kdlab with `args` in working directory `cwd` (so a default runs/ folder lands there),
// with KDLAB_PROGRESS=off plus `env`. stdout/stderr go to files, not pipes, so a chatty child
// can never block on a full pipe.
// address_space: when not 0, the child's RLIMIT_AS in bytes, so an allocation beyond it fails
// there (std::bad_alloc) instead of succeeding on a large machine.
// file_size: when not 0, the child's RLIMIT_FSIZE in bytes, with SIGXFSZ ignored: a write past
// it fails with EFBIG, which stands in for a full disk without mounting one.
inline Spawned spawn_kdlab(const std::vector<std::string>& args, const std::string& cwd,
                           const std::map<std::string, std::string>& env = {},
                           uint64_t address_space = 0, uint64_t file_size = 0) {
  Spawned s;
  s.io = std::make_unique<TempDir>();
  const std::string out_path = *s.io / "stdout", err_path = *s.io / "stderr";
  s.start = std::chrono::steady_clock::now();
  s.pid = fork();
  if (s.pid == 0) {
    int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out_fd < 0 || err_fd < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) _exit(126);
    if (chdir(cwd.c_str()) != 0) _exit(126);
    if (address_space != 0) {
      struct rlimit limit = {address_space, address_space};
      if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(126);
    }
    if (file_size != 0) {  // a full disk, as far as the child can tell: writes fail with EFBIG
      struct rlimit limit = {file_size, file_size};
      if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(126);
      signal(SIGXFSZ, SIG_IGN);  // kept across exec, so write() fails rather than killing
    }
    setenv("KDLAB_PROGRESS", "off", 1);
    for (const auto& kv : env) setenv(kv.first.c_str(), kv.second.c_str(), 1);
    std::vector<char*> argv;
    std::string binary = KDLAB_BINARY;
    argv.push_back(binary.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  EXPECT_GT(s.pid, 0) << "fork failed";
  return s;
}

// Waits for a spawned kdlab: its exit code (128 + signal when killed by one) and output.
inline RunResult wait_kdlab(Spawned& s) {
  RunResult r;
  int status = 0;
  if (s.pid > 0 && waitpid(s.pid, &status, 0) == s.pid)
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.start).count();
  r.out = read_file(*s.io / "stdout");
  r.err = read_file(*s.io / "stderr");
  return r;
}

// Runs kdlab with its address space capped at `address_space` bytes and a deadline: a child
// still running after `timeout_s` is killed (timed_out, code 128 + 9), so a reader that hangs
// fails its test instead of hanging the suite. peak_rss_kb is the child's peak resident memory.
inline RunResult run_kdlab_bounded(const std::vector<std::string>& args, const std::string& cwd,
                                   uint64_t address_space, double timeout_s = 120,
                                   const std::map<std::string, std::string>& env = {}) {
  Spawned s = spawn_kdlab(args, cwd, env, address_space);
  RunResult r;
  int status = 0;
  struct rusage usage = {};
  for (;;) {
    const pid_t done = s.pid > 0 ? wait4(s.pid, &status, WNOHANG, &usage) : -1;
    if (done != 0) break;
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - s.start).count();
    if (waited > timeout_s && !r.timed_out) {
      r.timed_out = true;
      kill(s.pid, SIGKILL);
    }
    usleep(10000);
  }
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.peak_rss_kb = usage.ru_maxrss;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.start).count();
  r.out = read_file(*s.io / "stdout");
  r.err = read_file(*s.io / "stderr");
  return r;
}

// Runs kdlab to the end (see spawn_kdlab).
inline RunResult run_kdlab(const std::vector<std::string>& args, const std::string& cwd,
                           const std::map<std::string, std::string>& env = {}) {
  Spawned s = spawn_kdlab(args, cwd, env);
  return wait_kdlab(s);
}

// Writes a uint8 IDX file (gzip-compressed unless raw) with the given dims and payload.
inline void write_idx(const std::string& path, uint32_t magic, const std::vector<uint32_t>& dims,
                      const uint8_t* data, size_t size, bool raw = false) {
  std::string bytes;
  auto be32 = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(char((v >> s) & 0xFF));
  };
  be32(magic);
  for (uint32_t d : dims) be32(d);
  bytes.append(reinterpret_cast<const char*>(data), size);
  if (raw) return write_file(path, bytes);
  gzFile f = gzopen(path.c_str(), "wb1");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size())) << path;
  ASSERT_EQ(gzclose(f), Z_OK) << path;
}

// Writes ds as <prefix>-images-idx3-ubyte.gz / <prefix>-labels-idx1-ubyte.gz into dir.
inline void write_fashion_mnist_split(const std::string& dir, const std::string& prefix,
                                      const data::Dataset& ds) {
  std::vector<uint8_t> labels(ds.labels.begin(), ds.labels.end());
  write_idx(dir + "/" + prefix + "-images-idx3-ubyte.gz", 0x803,
            {uint32_t(ds.n), uint32_t(ds.h), uint32_t(ds.w)}, ds.images.data(), ds.images.size());
  write_idx(dir + "/" + prefix + "-labels-idx1-ubyte.gz", 0x801, {uint32_t(ds.n)}, labels.data(),
            labels.size());
}

// The lines of a text (a last line without '\n' counts).
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// A Fashion-MNIST-format folder of seeded random 28x28 images: `train` and `test` images,
// labels i % 10 (no real data needed); `bad_label` puts a 12 into the training labels.
inline std::string write_synthetic_fmnist(const std::string& dir, int train = 64, int test = 32,
                                          bool bad_label = false) {
  fs::create_directories(dir);
  for (auto [prefix, n] : {std::pair<const char*, int>{"train", train}, {"t10k", test}}) {
    data::Dataset ds;
    ds.n = n, ds.c = 1, ds.h = 28, ds.w = 28, ds.num_classes = 10;
    ds.images.resize(size_t(n) * 28 * 28);
    const uint64_t first = std::string(prefix) == "train" ? 0 : uint64_t(1) << 32;
    for (size_t i = 0; i < ds.images.size(); ++i)
      ds.images[i] = uint8_t(255 * philox_uniform(11, kStreamTest, first + i));
    for (int i = 0; i < n; ++i) ds.labels.push_back(i % 10);
    if (bad_label && first == 0 && n > 37) ds.labels[37] = 12;
    write_fashion_mnist_split(dir, prefix, ds);
  }
  return dir;
}

inline std::vector<std::string> entries_of(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Exit code, the one-line format, the words the line must contain, and a silent stdout.
inline void expect_error(const RunResult& r, std::initializer_list<std::string> needles,
                         int code = 2) {
  EXPECT_EQ(r.code, code) << "stderr: " << r.err;
  const std::string prefix = "kdlab: error: ";
  EXPECT_EQ(r.err.rfind(prefix, 0), 0u) << "stderr: " << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.back(), '\n') << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "not one line:\n" << r.err;
  EXPECT_GT(r.err.size(), prefix.size() + 10) << "the message says nothing: " << r.err;
  for (const std::string& n : needles)
    EXPECT_NE(r.err.find(n), std::string::npos) << "'" << n << "' not in: " << r.err;
  EXPECT_EQ(r.out, "") << "an error run should print nothing on stdout";
}

}  // namespace cli_testing
}  // namespace kd
