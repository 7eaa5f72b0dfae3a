// The profiler window of --profile-steps: parsing, and that it opens exactly before step A and
// closes exactly after step B, counting steps across loops. Without a GPU the CUDA profiler
// calls are no-ops, so this runs everywhere.
#include <gtest/gtest.h>

#include "engine/profile.h"
#include "engine/runtime_config.h"
#include "base/check.h"

namespace kd {
namespace {

TEST(Profile, ParsesStepWindowAndRefusesBadOnes) {
  profile::StepWindow w = profile::parse_step_window("3:5");
  EXPECT_EQ(w.first, 3);
  EXPECT_EQ(w.last, 5);
  EXPECT_TRUE(w.active());
  EXPECT_EQ(profile::parse_step_window("7:7").last, 7);
  for (const char* bad : {"", "3", "5:3", "0:2", ":4", "4:", "a:b", "3:5x", "-1:2"})
    EXPECT_THROW(profile::parse_step_window(bad), InputError) << bad;
}

TEST(Profile, WindowOpensBeforeFirstStepAndClosesAfterLast) {
  const int64_t base = profile::steps_done();
  RuntimeConfig config = runtime_config();
  config.profile_window = {base + 3, base + 5};
  ScopedRuntimeConfig scope(config);
  std::vector<bool> open_during;
  for (int i = 0; i < 8; ++i) {
    profile::step_begin();
    open_during.push_back(profile::window_open());
    profile::step_end();
  }
  EXPECT_EQ(profile::steps_done(), base + 8);
  EXPECT_EQ(open_during, (std::vector<bool>{false, false, true, true, true, false, false, false}));
  EXPECT_FALSE(profile::window_open());
}

}  // namespace
}  // namespace kd
