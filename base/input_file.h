// Opening a file a user named as input (a data file, a checkpoint). Only a regular file is read:
// opening a FIFO for reading blocks until some writer appears (forever, for a stray `mkfifo`),
// a character device such as /dev/zero never ends, and a directory fails with a confusing errno
// later. The file is opened O_NONBLOCK (which makes opening a FIFO return at once), checked with
// fstat on the descriptor itself (no window between the check and the open), and only then
// switched back to blocking reads. The size it reports is what readers size their buffers from:
// nothing read from a file may need more memory than the file can hold.
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/check.h"

namespace kd {

// What a non-regular file is, for the refusal's message.
inline const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

// An open regular file: the descriptor (closed on destruction) and its size at opening.
class InputFile {
 public:
  // Throws InputError "PATH: cannot open: REASON" or "PATH: not a regular file (a FIFO)".
  explicit InputFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) throw InputError(path + ": cannot open: " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      ::close(fd_);
      throw InputError(path + ": cannot stat: " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw InputError(path + ": not a regular file (" + file_kind(st.st_mode) + ")");
    }
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags >= 0) ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
    size_ = static_cast<int64_t>(st.st_size);
  }
  ~InputFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  int fd() const { return fd_; }
  int64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Reads up to len bytes (retrying short reads and EINTR); returns the count, which is below len
  // only at the end of the file. A read error is an InputError naming the file.
  size_t read(void* buf, size_t len) {
    size_t got = 0;
    while (got < len) {
      const ssize_t r = ::read(fd_, static_cast<char*>(buf) + got, len - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw InputError(path_ + ": read error: " + std::strerror(errno));
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    return got;
  }

 private:
  std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;
};

}  // namespace kd
