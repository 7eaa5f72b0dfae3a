// Temp file + fsync + rename + directory fsync (see atomic_file.h). Plain POSIX descriptors rather
// than FILE*: every write and fsync result is checked, and there is no stdio buffer to forget.
#include "engine/atomic_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>

#include "base/check.h"

namespace kd {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
  std::ostringstream os;
  os << "cannot write '" << path << "': " << what << ": " << std::strerror(err);
  // A full disk or a failing device is the machine's condition (exit 1); a path that cannot be
  // written (permissions, a missing folder, a read-only file system) is the user's input (exit 2).
  if (err == ENOSPC || err == EDQUOT || err == EIO || err == EFBIG) throw Error(os.str());
  throw InputError(os.str());
}

// Directory part of `path` ("." when there is none), where the temp file must live.
std::string directory_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool write_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Owns the temp file until it has been renamed; removes it on every early exit.
struct TempFile {
  std::string name;
  int fd = -1;
  bool renamed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!renamed && !name.empty()) ::unlink(name.c_str());
  }
};

}  // namespace

void write_file_atomic(const std::string& path, const std::vector<ByteSpan>& chunks) {
  KD_INPUT_CHECK(!path.empty(), "cannot write a file with an empty path");
  KD_INPUT_CHECK(path.back() != '/', "cannot write '" << path << "': the path names a directory");
  const std::string dir = directory_of(path);
  const std::string base = path.substr(path.find_last_of('/') + 1);

  TempFile tmp;
  std::string pattern = dir + "/." + base + ".tmp.XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  tmp.fd = ::mkstemp(buf.data());
  if (tmp.fd < 0) {
    int err = errno;
    fail(path, "cannot create a temp file in '" + dir + "'", err);
  }
  tmp.name = buf.data();

  // mkstemp makes 0600; a checkpoint should be readable like any other file.
  struct stat old_stat;
  mode_t mode = (::stat(path.c_str(), &old_stat) == 0) ? (old_stat.st_mode & 07777) : 0644;
  if (::fchmod(tmp.fd, mode) != 0) {
    int err = errno;
    fail(path, "fchmod of temp file", err);
  }

  for (const ByteSpan& chunk : chunks) {
    if (chunk.size > 0 && !write_all(tmp.fd, chunk.data, chunk.size)) {
      int err = errno;
      fail(path, "write to temp file '" + tmp.name + "'", err);
    }
  }
  if (::fsync(tmp.fd) != 0) {
    int err = errno;
    fail(path, "fsync of temp file '" + tmp.name + "'", err);
  }
  int fd = tmp.fd;
  tmp.fd = -1;
  if (::close(fd) != 0) {
    int err = errno;
    fail(path, "close of temp file '" + tmp.name + "'", err);
  }
  if (::rename(tmp.name.c_str(), path.c_str()) != 0) {
    int err = errno;
    fail(path, "rename of temp file '" + tmp.name + "'", err);
  }
  tmp.renamed = true;

  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd < 0) {
    int err = errno;
    fail(path, "written, but cannot open directory '" + dir + "' to fsync it", err);
  }
  int rc = ::fsync(dir_fd);
  int err = errno;
  ::close(dir_fd);
  if (rc != 0) fail(path, "written, but fsync of directory '" + dir + "' failed", err);
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_file_atomic(path, std::vector<ByteSpan>{ByteSpan{contents.data(), contents.size()}});
}

}  // namespace kd
