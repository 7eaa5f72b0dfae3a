// The shape every fuzz target shares (tests/fuzz/fuzz_*.cpp). A target is a function from bytes to
// nothing that must either return or throw kd::InputError: a refusal of bad input is the expected
// outcome. Anything else surfaces: a crash, a sanitizer report, any other exception (a plain
// kd::Error, i.e. a "[check ...]" failure, on outside bytes means a reader trusted its input).
//
// KD_FUZZ_TARGET(name) { body } compiles two ways:
// - in the clang fuzz build (KDLAB_FUZZ_ENTRY defined) as libFuzzer's LLVMFuzzerTestOneInput;
// - otherwise it registers the body under `name` for the replay driver (replay_main.cpp), which
//   runs every committed corpus and crash file in every ordinary build, with no clang.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/check.h"

namespace kd {
namespace fuzz {

using TargetFn = void (*)(const uint8_t* data, size_t size);

// Runs `fn`, treating kd::InputError as the input's legitimate refusal.
inline int run_target(TargetFn fn, const uint8_t* data, size_t size) {
  try {
    fn(data, size);
  } catch (const kd::InputError&) {
  }
  return 0;
}

// Replay build: targets register themselves by name (defined in replay_main.cpp).
bool register_target(const char* name, TargetFn fn);

// The input as text / as a file. The file lives in a private temp folder of this process
// (/dev/shm when present: fuzzing writes it thousands of times a second) under `name`.
inline std::string as_text(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}
std::string scratch_dir();
std::string write_scratch(const std::string& name, const uint8_t* data, size_t size);

}  // namespace fuzz
}  // namespace kd

#define KD_FUZZ_CAT2(a, b) a##b
#define KD_FUZZ_CAT(a, b) KD_FUZZ_CAT2(a, b)
#ifdef KDLAB_FUZZ_ENTRY
#define KD_FUZZ_TARGET(name)                                                  \
  static void kd_fuzz_body(const uint8_t* data, size_t size);                \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    return ::kd::fuzz::run_target(kd_fuzz_body, data, size);                 \
  }                                                                          \
  static void kd_fuzz_body(const uint8_t* data, size_t size)
#else
#define KD_FUZZ_TARGET(name)                                                           \
  static void KD_FUZZ_CAT(kd_fuzz_body_, name)(const uint8_t* data, size_t size);     \
  static const bool KD_FUZZ_CAT(kd_fuzz_registered_, name) =                          \
      ::kd::fuzz::register_target(#name, KD_FUZZ_CAT(kd_fuzz_body_, name));           \
  static void KD_FUZZ_CAT(kd_fuzz_body_, name)(const uint8_t* data, size_t size)
#endif
