// Checkpoint I/O: save_checkpoint/load_checkpoint keep dtype, shape and bytes exactly; save_model/
// load_model round-trip real models under PyTorch state-dict names with their metadata, and every
// malformed file is refused with a kd::InputError that names the file and the offending key/tensor.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <functional>

#include "apps/model_io.h"
#include "engine/checkpoint.h"
#include "engine/safetensors.h"
#include "base/philox.h"

namespace fs = std::filesystem;
using kd::Tensor;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    path = (fs::temp_directory_path() / "kdlab-ckpt-XXXXXX").string();
    EXPECT_NE(mkdtemp(path.data()), nullptr);
  }
  ~TempDir() { fs::remove_all(path); }
};

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Gives every floating tensor fresh random values (and every counter a distinct value), so a
// round trip cannot pass by rebuilding the model's own deterministic initialisation.
void scramble(const kd::nn::NamedTensors& state, uint64_t seed) {
  uint64_t counter = 0;
  for (const auto& kv : state) {
    Tensor t = kv.second;
    if (t.dtype() == kd::DType::F32) {
      float* p = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i)
        p[i] = kd::philox_uniform(seed, kd::kStreamTest, counter++) * 2 - 1;
    } else if (t.dtype() == kd::DType::I64) {
      t.data<int64_t>()[0] = int64_t(1000 + counter++);
    }
  }
}

void expect_round_trip(const std::string& arch, int classes, int channels,
                       const std::vector<std::string>& expected_names) {
  TempDir dir;
  std::string path = dir.path + "/" + arch + ".safetensors";
  auto model = kd::models::make_model(arch, classes, channels, 3);
  scramble(model->state_dict(), 11);
  std::vector<float> mean, stdev;
  for (int c = 0; c < channels; ++c)
    mean.push_back(0.1f * c + 0.4914f), stdev.push_back(0.2470f + c);
  kd::apps::save_model(path, *model, mean, stdev, {{"role", "teacher"}});

  // The file itself: PyTorch state-dict names, in state-dict order.
  kd::StFile raw = kd::read_safetensors(path);
  auto state = model->state_dict();
  ASSERT_EQ(raw.entries.size(), state.size());
  for (size_t i = 0; i < state.size(); ++i) EXPECT_EQ(raw.entries[i].name, state[i].first);
  for (const auto& name : expected_names) EXPECT_NE(kd::find(raw, name), nullptr) << name;

  kd::apps::LoadedModel loaded = kd::apps::load_model(path);
  ASSERT_TRUE(loaded.model);
  EXPECT_EQ(loaded.model->arch, arch);
  EXPECT_EQ(loaded.model->num_classes, classes);
  EXPECT_EQ(loaded.model->in_channels, channels);
  EXPECT_FALSE(loaded.model->is_training());
  EXPECT_EQ(loaded.norm_mean, mean);
  EXPECT_EQ(loaded.norm_std, stdev);
  EXPECT_EQ(loaded.metadata.at("format"), "kdlab-checkpoint-1");
  EXPECT_EQ(loaded.metadata.at("model"), arch);
  EXPECT_EQ(loaded.metadata.at("num_classes"), std::to_string(classes));
  EXPECT_EQ(loaded.metadata.at("in_channels"), std::to_string(channels));
  EXPECT_EQ(loaded.metadata.at("image_size"), std::to_string(model->image_size));
  EXPECT_EQ(loaded.metadata.at("role"), "teacher");
  // The rebuilt model computes exactly what the saved one computes.
  const int n = 2, size = model->image_size;
  std::vector<float> pixels(size_t(n) * channels * size * size);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = kd::philox_uniform(13, kd::kStreamTest, i);
  Tensor x = Tensor::from_vector<float>({n, channels, size, size}, pixels);
  model->eval();
  EXPECT_TRUE(bitwise_equal(model->forward(x), loaded.model->forward(x)));

  auto reloaded = loaded.model->state_dict();
  ASSERT_EQ(reloaded.size(), state.size());
  for (size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(reloaded[i].first, state[i].first);
    EXPECT_TRUE(bitwise_equal(reloaded[i].second, state[i].second)) << state[i].first;
  }
}

// Writes `path` after `edit` changes the decoded file, then expects load_model to refuse it with
// a message naming the file and `needle`.
void expect_refused(const std::string& good, const std::string& path, const std::string& needle,
                    const std::function<void(kd::StFile&)>& edit) {
  kd::StFile file = kd::read_safetensors(good);
  edit(file);
  kd::write_safetensors_atomic(path, file);
  try {
    kd::apps::load_model(path);
    ADD_FAILURE() << "load_model accepted a file with a problem in " << needle;
  } catch (const kd::InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

kd::StEntry& entry(kd::StFile& f, const std::string& name) {
  for (auto& e : f.entries)
    if (e.name == name) return e;
  throw std::runtime_error("test: no entry " + name);
}

}  // namespace

TEST(Checkpoint, RoundTripKeepsDtypeShapeOrderAndBytes) {
  TempDir dir;
  std::string path = dir.path + "/state.safetensors";
  Tensor f32 = Tensor::empty({3, 5}, kd::DType::F32);
  for (int i = 0; i < 15; ++i)
    f32.data<float>()[i] = kd::philox_uniform(5, kd::kStreamTest, i) - 0.5f;
  Tensor f64 = Tensor::from_vector<double>({2}, {1.0 / 3.0, -2.5e-300});
  Tensor i64 = Tensor::from_vector<int64_t>({}, {int64_t(1) << 40});
  Tensor i32 = Tensor::from_vector<int32_t>({1, 3}, {-1, 0, 7});
  Tensor u8 = Tensor::from_vector<uint8_t>({7}, {0, 1, 2, 3, 254, 255, 9});
  Tensor empty = Tensor::empty({0, 4}, kd::DType::F32);
  kd::nn::NamedTensors state = {{"z.f32", f32}, {"a.f64", f64}, {"m.steps", i64},
                                {"idx", i32},   {"bytes", u8},  {"nothing", empty}};
  kd::save_checkpoint(path, state, {{"k", "v"}, {"json", "[1, 2]"}});

  kd::StFile raw = kd::read_safetensors(path);
  ASSERT_EQ(raw.entries.size(), state.size());
  for (size_t i = 0; i < state.size(); ++i) EXPECT_EQ(raw.entries[i].name, state[i].first);

  kd::Checkpoint ckpt = kd::load_checkpoint(path);
  EXPECT_EQ(ckpt.metadata, (std::map<std::string, std::string>{{"k", "v"}, {"json", "[1, 2]"}}));
  ASSERT_EQ(ckpt.tensors.size(), state.size());
  for (const auto& kv : state) {
    const Tensor& got = ckpt.tensors.at(kv.first);
    EXPECT_TRUE(got.device().is_cpu());
    EXPECT_TRUE(bitwise_equal(got, kv.second)) << kv.first << ": " << kd::describe(got);
  }
  // Loaded tensors own their storage: changing one leaves the source alone.
  ckpt.tensors.at("z.f32").data<float>()[0] = 42.0f;
  EXPECT_NE(f32.data<float>()[0], 42.0f);
}

TEST(Checkpoint, ErrorsNameTheFile) {
  TempDir dir;
  std::string missing = dir.path + "/absent.safetensors";
  try {
    kd::load_checkpoint(missing);
    FAIL() << "expected InputError";
  } catch (const kd::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  Tensor t = Tensor::zeros({2});
  std::string dup = dir.path + "/dup.safetensors";
  try {
    kd::save_checkpoint(dup, {{"w", t}, {"w", t}}, {});
    FAIL() << "expected InputError";
  } catch (const kd::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(dup), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dup));
}

TEST(ModelIo, RoundTripLenet5) {
  expect_round_trip(
      "lenet5", 10, 1,
      {"0.weight", "0.bias", "3.weight", "7.weight", "9.bias", "11.weight", "11.bias"});
}

TEST(ModelIo, RoundTripPreResNet20) {
  expect_round_trip("preresnet20", 7, 3,
                    {"conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.running_mean",
                     "layer1.0.bn1.running_var", "layer1.0.bn1.num_batches_tracked",
                     "layer2.0.downsample.0.weight", "layer3.2.conv2.weight", "bn.running_var",
                     "fc.weight", "fc.bias"});
}

TEST(ModelIo, BadFilesAreRefusedNamingFileAndProblem) {
  TempDir dir;
  std::string good = dir.path + "/good.safetensors";
  std::string bad = dir.path + "/bad.safetensors";
  auto model = kd::models::make_model("lenet5", 10, 1, 1);
  kd::apps::save_model(good, *model, {0.2860f}, {0.3530f});
  ASSERT_NO_THROW(kd::apps::load_model(good));

  expect_refused(good, bad, "7.weight", [](kd::StFile& f) {
    auto& e = entry(f, "7.weight");
    e.shape = {120, 399};
    e.bytes.resize(120 * 399 * 4);
  });
  expect_refused(good, bad, "0.bias", [](kd::StFile& f) {
    auto& e = entry(f, "0.bias");
    e = kd::make_entry<double>("0.bias", {6}, std::vector<double>(6, 0.5));
  });
  expect_refused(good, bad, "11.bias", [](kd::StFile& f) { f.entries.pop_back(); });
  expect_refused(good, bad, "12.weight", [](kd::StFile& f) {
    f.entries.push_back(kd::make_entry<float>("12.weight", {2}, {1.f, 2.f}));
  });
  for (const char* key : {"format", "model", "num_classes", "in_channels", "image_size",
                          "normalization_mean", "normalization_std"})
    expect_refused(good, bad, key, [&](kd::StFile& f) { f.metadata.erase(key); });
  expect_refused(good, bad, "format", [](kd::StFile& f) { f.metadata["format"] = "other-1"; });
  expect_refused(good, bad, "model", [](kd::StFile& f) { f.metadata["model"] = "resnet9000"; });
  expect_refused(good, bad, "num_classes",
                 [](kd::StFile& f) { f.metadata["num_classes"] = "10x"; });
  expect_refused(good, bad, "11.weight", [](kd::StFile& f) { f.metadata["num_classes"] = "11"; });
  expect_refused(good, bad, "in_channels", [](kd::StFile& f) { f.metadata["in_channels"] = "-1"; });
  expect_refused(good, bad, "image_size", [](kd::StFile& f) { f.metadata["image_size"] = "32"; });
  expect_refused(good, bad, "normalization_mean",
                 [](kd::StFile& f) { f.metadata["normalization_mean"] = "[0.5"; });
  expect_refused(good, bad, "normalization_mean",
                 [](kd::StFile& f) { f.metadata["normalization_mean"] = "[0.1, 0.2]"; });
  expect_refused(good, bad, "normalization_std",
                 [](kd::StFile& f) { f.metadata["normalization_std"] = "[0]"; });

  std::string absent = dir.path + "/absent.safetensors";
  try {
    kd::apps::load_model(absent);
    FAIL() << "expected InputError";
  } catch (const kd::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(absent), std::string::npos) << e.what();
  }
}

TEST(ModelIo, SaveRefusesMismatchedNormalizationAndReservedExtraKeys) {
  TempDir dir;
  auto model = kd::models::make_model("lenet5", 10, 1, 1);
  EXPECT_THROW(kd::apps::save_model(dir.path + "/a.safetensors", *model, {0.1f, 0.2f}, {0.3f}),
               kd::Error);
  EXPECT_THROW(kd::apps::save_model(dir.path + "/b.safetensors", *model, {0.1f}, {0.3f},
                                    {{"model", "lenet5"}}),
               kd::Error);
  EXPECT_FALSE(fs::exists(dir.path + "/a.safetensors"));
  EXPECT_FALSE(fs::exists(dir.path + "/b.safetensors"));
}
