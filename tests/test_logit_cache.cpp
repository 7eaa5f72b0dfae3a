// The teacher-logit cache of distillation: the ensemble's logits computed once (on the test set
// always, on the distillation images when their batches draw no augmentation or MixUp) must give
// bitwise the run the teachers give when they run on every batch (--no-logit-cache), through
// the real binary, with BatchNorm teachers and an ensemble.
#include <gtest/gtest.h>

#include <cstring>

#include "base/philox.h"
#include "engine/autograd.h"
#include "models/registry.h"
#include "tests/cli_testing.h"

namespace kd {
namespace {

using namespace cli_testing;

std::string metrics_without_seconds(const std::string& run_dir) {
  std::string out;
  for (const std::string& line : lines_of(read_file(run_dir + "/metrics.csv")))
    out += line.substr(0, line.rfind(',')) + "\n";
  return out;
}

// What the cache rests on: on the CPU an image's logits depend on that image alone, not on the
// size or the order of the batch it came in (eval mode).
TEST(LogitCache, EveryModelsLogitsAreBatchInvariantOnTheCpu) {
  NoGradGuard no_grad;
  for (const char* arch : {"lenet5", "preresnet8", "preresnet8-ln", "vgg16"}) {
    auto model = models::make_model(arch, 10, 3, 1);
    model->eval();
    const int n = std::string(arch) == "vgg16" ? 40 : 130, s = model->image_size;
    Tensor x = Tensor::empty({n, 3, s, s});
    for (int64_t i = 0; i < x.numel(); ++i)
      x.data<float>()[i] = float(2 * philox_uniform(5, kStreamTest, uint64_t(i)) - 1);
    const Tensor all = model->forward(x);
    const size_t image = x.nbytes() / size_t(n), row = all.nbytes() / size_t(n);
    for (int rows : {1, 5, 33}) {
      Tensor some = Tensor::empty({rows, 3, s, s});  // the last `rows` images, reversed
      for (int r = 0; r < rows; ++r)
        std::memcpy(static_cast<char*>(some.raw()) + r * image,
                    static_cast<const char*>(x.raw()) + (n - 1 - r) * image, image);
      const Tensor out = model->forward(some);
      int differ = 0;
      for (int r = 0; r < rows; ++r)
        differ += std::memcmp(static_cast<const char*>(out.raw()) + r * row,
                              static_cast<const char*>(all.raw()) + (n - 1 - r) * row, row) != 0;
      EXPECT_EQ(differ, 0) << arch << ": " << rows << " images of " << n;
    }
  }
}

TEST(LogitCache, DistillationIsBitwiseTheSameWithAndWithoutIt) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  for (int seed : {1, 2}) {
    RunResult t = run_kdlab({"train", "--data-dir", data, "--model", "preresnet8", "--pad-to", "32",
                             "--epochs", "1", "--batch", "16", "--threads", "2", "--seed",
                             std::to_string(seed), "--out", tmp / ("t" + std::to_string(seed))},
                            tmp.path);
    ASSERT_EQ(t.code, 0) << t.err;
  }
  // Unaugmented batches (everything cached; batch 24 leaves a partial last batch) and flipped
  // ones (the test set only).
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{}, std::vector<std::string>{"--hflip"}}) {
    std::vector<std::string> args = {"distill",
                                     "--teacher",
                                     tmp / "t1/model.safetensors",
                                     "--teacher",
                                     tmp / "t2/model.safetensors",
                                     "--data-dir",
                                     data,
                                     "--pad-to",
                                     "32",
                                     "--epochs",
                                     "2",
                                     "--batch",
                                     "24",
                                     "--threads",
                                     "2",
                                     "--eval-every",
                                     "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string what = extra.empty() ? "unaugmented" : "hflip";
    std::vector<std::string> cached = args, uncached = args;
    cached.insert(cached.end(), {"--out", tmp / ("cached-" + what)});
    uncached.insert(uncached.end(), {"--out", tmp / ("uncached-" + what), "--no-logit-cache"});
    RunResult a = run_kdlab(cached, tmp.path), b = run_kdlab(uncached, tmp.path);
    ASSERT_EQ(a.code, 0) << a.err;
    ASSERT_EQ(b.code, 0) << b.err;
    const std::string on = tmp / ("cached-" + what), off = tmp / ("uncached-" + what);
    EXPECT_TRUE(read_file(on + "/student.safetensors") == read_file(off + "/student.safetensors"))
        << what << ": the students differ";
    EXPECT_EQ(metrics_without_seconds(on), metrics_without_seconds(off)) << what;
    EXPECT_EQ(read_file(on + "/summary.json"), read_file(off + "/summary.json")) << what;
    EXPECT_EQ(lines_of(a.out).front(), lines_of(b.out).front()) << what;  // the printed figures
    const std::string config = read_file(on + "/config.json");
    EXPECT_NE(config.find(extra.empty() ? "\"logit_cache\": \"test set and distillation images\""
                                        : "\"logit_cache\": \"test set\""),
              std::string::npos)
        << config;
    EXPECT_NE(read_file(off + "/config.json").find("\"logit_cache\": \"off\""), std::string::npos);
  }
}

}  // namespace
}  // namespace kd
