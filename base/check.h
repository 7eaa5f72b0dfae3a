// The one place errors are raised. Every layer throws kd::Error (or a subclass) through these
// macros; nothing in the library calls exit. Apps catch at main and print one line.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace kd {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Bad input from a user: a file, a flag, a shape. Apps print these without the source location.
struct InputError : Error {
  using Error::Error;
};
struct CudaError : Error {
  using Error::Error;
};
struct CublasError : CudaError {
  using CudaError::CudaError;
};
struct CudnnError : CudaError {
  using CudaError::CudaError;
};

namespace detail {
[[noreturn]] inline void throw_check(const char* cond, const std::string& msg, const char* file,
                                     int line) {
  std::ostringstream os;
  os << msg << " [check " << cond << " failed at " << file << ":" << line << "]";
  throw Error(os.str());
}
template <class E>
[[noreturn]] inline void throw_library(const char* call, const char* message, int code,
                                       const char* file, int line) {
  std::ostringstream os;
  os << call << " failed: " << (message ? message : "unknown error") << " (code " << code
     << ") at " << file << ":" << line;
  throw E(os.str());
}
}  // namespace detail
}  // namespace kd

// KD_CHECK(cond, "conv2d: input " << shape << " ...") — the message is a stream expression.
#define KD_CHECK(cond, msg)                                                     \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::ostringstream kd_check_os_;                                          \
      kd_check_os_ << msg;                                                      \
      ::kd::detail::throw_check(#cond, kd_check_os_.str(), __FILE__, __LINE__); \
    }                                                                           \
  } while (0)

// Refuse user input: one line naming the file or flag and what was expected.
#define KD_INPUT_CHECK(cond, msg)          \
  do {                                     \
    if (!(cond)) {                         \
      std::ostringstream kd_check_os_;     \
      kd_check_os_ << msg;                 \
      throw ::kd::InputError(kd_check_os_.str()); \
    }                                      \
  } while (0)

// GPU library calls. The macros expand where the library's header is included (these headers stay
// free of CUDA includes so host-only code can include check.h); every status type has success 0.
#define CUDA_CHECK(call)                                                                       \
  do {                                                                                         \
    const auto kd_status_ = (call);                                                            \
    if (kd_status_ != 0)                                                                       \
      ::kd::detail::throw_library<::kd::CudaError>(#call, cudaGetErrorString(kd_status_),     \
                                                   int(kd_status_), __FILE__, __LINE__);      \
  } while (0)
#define CUBLAS_CHECK(call)                                                                      \
  do {                                                                                          \
    const auto kd_status_ = (call);                                                             \
    if (kd_status_ != 0)                                                                        \
      ::kd::detail::throw_library<::kd::CublasError>(#call, cublasGetStatusString(kd_status_), \
                                                     int(kd_status_), __FILE__, __LINE__);     \
  } while (0)
#define CUDNN_CHECK(call)                                                                     \
  do {                                                                                        \
    const auto kd_status_ = (call);                                                           \
    if (kd_status_ != 0)                                                                      \
      ::kd::detail::throw_library<::kd::CudnnError>(#call, cudnnGetErrorString(kd_status_),  \
                                                    int(kd_status_), __FILE__, __LINE__);    \
  } while (0)
