// `kdlab import` of teachers PyTorch saved the standard way (tests/golden/torch_teachers/, made by
// tools/make_torch_teacher.py with the official safetensors library: no kdlab metadata). The
// imported models must give PyTorch's eval-mode logits on the stored inputs; every broken file (a
// renamed, missing or misshapen tensor, a head for other classes, another architecture's file)
// must be refused in one line naming the file and the tensor, with exit 2 and no output file.
// Tolerance: both sides run float32; |ours - torch| <= 1e-4 * max|torch| per model (measured:
// 6.7e-8 for LeNet-5, 3.2e-7 for PreResNet-8; the sums run in different orders).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "apps/import_cmd.h"
#include "apps/model_io.h"
#include "engine/autograd.h"
#include "engine/safetensors.h"
#include "tests/cli_testing.h"

#ifndef KDLAB_SOURCE_DIR
#define KDLAB_SOURCE_DIR "/work/main"
#endif

namespace kd {
namespace {

using namespace cli_testing;

std::string teacher_file(const std::string& name) {
  return std::string(KDLAB_SOURCE_DIR) + "/tests/golden/torch_teachers/" + name;
}

// max |ours - torch| / max |torch| of `model`'s eval logits on the stored input of `name`.
double relative_logit_error(models::Classifier& model, const std::string& name) {
  const std::string path = teacher_file("expected.safetensors");
  StFile expected = read_safetensors(path);
  const StEntry& input = require(expected, name + ".input", path);
  const std::vector<float> want = values<float>(require(expected, name + ".logits", path));
  NoGradGuard no_grad;
  model.eval();
  Tensor x = Tensor::from_vector<float>(Shape(input.shape.begin(), input.shape.end()),
                                        values<float>(input));
  const std::vector<float> got = model.forward(x).to_vector<float>();
  EXPECT_EQ(got.size(), want.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    diff = std::max(diff, std::abs(double(got[i]) - want[i]));
    scale = std::max(scale, std::abs(double(want[i])));
  }
  return diff / scale;
}

TEST(Import, PytorchTeachersGivePytorchsLogits) {
  struct Case { const char* name; int channels; };
  for (Case c : {Case{"lenet5", 1}, Case{"preresnet8", 1}}) {
    auto model = apps::import_state_dict(teacher_file(std::string(c.name) + ".safetensors"),
                                         c.name, 10, c.channels);
    const double error = relative_logit_error(*model, c.name);
    EXPECT_LT(error, 1e-4) << c.name;
    std::printf("[          ] %s: max |kdlab - torch| / max |torch| = %.3g\n", c.name, error);
  }
}

TEST(Import, TheCommandWritesACheckpointThatEvalReads) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  for (const char* arch : {"lenet5", "preresnet8"}) {
    SCOPED_TRACE(arch);
    const std::string in = teacher_file(std::string(arch) + ".safetensors");
    const std::string out = tmp / (std::string(arch) + "-kdlab.safetensors");
    std::vector<std::string> args = {"import", in, "--model", arch, "--dataset", "fmnist",
                                     "--data-dir", data, "--out", out};
    if (std::string(arch) == "preresnet8") args.insert(args.end(), {"--pad-to", "32"});
    RunResult r = run_kdlab(args, tmp.path);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find(out), std::string::npos) << r.out;
    apps::LoadedModel loaded = apps::load_model(out);
    EXPECT_EQ(loaded.model->arch, arch);
    EXPECT_EQ(loaded.norm_mean, std::vector<float>{0.5f});
    EXPECT_EQ(loaded.norm_std, std::vector<float>{0.5f});
    EXPECT_EQ(loaded.metadata.at("imported_from"), in);
    EXPECT_EQ(loaded.metadata.at("role"), "imported teacher");
    EXPECT_EQ(loaded.metadata.at("dataset"), "fmnist");
    EXPECT_LT(relative_logit_error(*loaded.model, arch), 1e-4);
    // Usable as it stands: eval reads its padding from the metadata.
    RunResult ev = run_kdlab({"eval", "--model", out, "--data-dir", data, "--threads", "1"},
                             tmp.path);
    EXPECT_EQ(ev.code, 0) << ev.err;
    EXPECT_NE(ev.out.find("\"accuracy\""), std::string::npos) << ev.out;
  }
  // Before import, eval refuses the raw PyTorch file (the reason this command exists).
  RunResult raw = run_kdlab({"eval", "--model", teacher_file("lenet5.safetensors"), "--data-dir",
                             data},
                            tmp.path);
  expect_error(raw, {"lenet5.safetensors", "'format' is missing"});
}

// The preresnet8 file rewritten with one change (engine/safetensors); the import must refuse it.
std::string damaged_copy(const TempDir& tmp, const std::string& name,
                         const std::function<void(StFile&)>& damage) {
  StFile file = read_safetensors(teacher_file("preresnet8.safetensors"));
  damage(file);
  const std::string path = tmp / name;
  write_safetensors_atomic(path, file);
  return path;
}

StEntry* entry(StFile& file, const std::string& name) {
  for (StEntry& e : file.entries)
    if (e.name == name) return &e;
  ADD_FAILURE() << "no " << name;
  return &file.entries.front();
}

// A teacher saved in bfloat16 (model.to(torch.bfloat16): float tensors BF16, the batch counter
// still I64) imports with every value widened exactly, and its logits stay near PyTorch's f32
// ones (bf16 keeps 8 significant bits; the bound is loose by design). A BF16 tensor where an
// integer one belongs is still refused.
TEST(Import, ABfloat16TeacherWidensExactlyIntoF32) {
  TempDir tmp;
  const std::string path = damaged_copy(tmp, "bf16.safetensors", [](StFile& f) {
    for (StEntry& e : f.entries) {
      if (e.dtype != "F32") continue;
      std::vector<bf16> narrow;
      for (float v : values<float>(e)) narrow.push_back(bf16_from_float(v));
      e = make_entry<bf16>(e.name, e.shape, narrow);
    }
  });
  auto model = apps::import_state_dict(path, "preresnet8", 10, 1);
  const StFile original = read_safetensors(teacher_file("preresnet8.safetensors"));
  for (const auto& [name, t] : model->state_dict()) {
    const StEntry& e = require(original, name, "preresnet8.safetensors");
    if (e.dtype != "F32") continue;
    ASSERT_EQ(t.dtype(), DType::F32) << name;
    const std::vector<float> got = t.to_vector<float>(), want = values<float>(e);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], bf16_to_float(bf16_from_float(want[i]))) << name << "[" << i << "]";
  }
  const double error = relative_logit_error(*model, "preresnet8");
  EXPECT_GT(error, 1e-6) << "the weights were not rounded";
  EXPECT_LT(error, 0.1);
  const std::string counter = damaged_copy(tmp, "counter.safetensors", [](StFile& f) {
    StEntry* e = entry(f, "bn.num_batches_tracked");
    *e = make_entry<bf16>(e->name, e->shape, {bf16_from_float(1.0f)});
  });
  EXPECT_THROW(apps::import_state_dict(counter, "preresnet8", 10, 1), InputError);
}

TEST(Import, BrokenStateDictsAreRefusedNamingTheTensorAndWriteNothing) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  auto import = [&](const std::string& in, const std::string& arch = "preresnet8") {
    return run_kdlab({"import", in, "--model", arch, "--dataset", "fmnist", "--data-dir", data,
                      "--pad-to", "32", "--out", tmp / "out.safetensors"},
                     tmp.path);
  };
  const std::string renamed = damaged_copy(tmp, "renamed.safetensors", [](StFile& f) {
    entry(f, "layer2.0.conv1.weight")->name = "layer2.0.conv_1.weight";
  });
  expect_error(import(renamed), {"renamed.safetensors", "'layer2.0.conv1.weight' is missing",
                                   "1 more"});
  const std::string missing = damaged_copy(tmp, "missing.safetensors", [](StFile& f) {
    f.entries.erase(std::find_if(f.entries.begin(), f.entries.end(),
                                 [](const StEntry& e) { return e.name == "bn.running_var"; }));
  });
  expect_error(import(missing), {"missing.safetensors", "'bn.running_var' is missing"});
  const std::string misshapen = damaged_copy(tmp, "misshapen.safetensors", [](StFile& f) {
    StEntry* e = entry(f, "layer3.0.conv2.weight");  // [64, 64, 3, 3] -> [64, 64, 1, 9]
    e->shape = {64, 64, 1, 9};
  });
  expect_error(import(misshapen), {"misshapen.safetensors", "'layer3.0.conv2.weight'",
                                     "[64, 64, 1, 9]", "[64, 64, 3, 3]"});
  const std::string wide_head = damaged_copy(tmp, "head100.safetensors", [](StFile& f) {
    StEntry* w = entry(f, "fc.weight");
    w->shape = {100, 64};
    w->bytes.resize(100 * 64 * 4);
    StEntry* b = entry(f, "fc.bias");
    b->shape = {100};
    b->bytes.resize(100 * 4);
  });
  expect_error(import(wide_head), {"head100.safetensors", "'fc.weight'", "100 classes",
                                     "the dataset 10"});
  const std::string extra = damaged_copy(tmp, "extra.safetensors", [](StFile& f) {
    f.entries.push_back(make_entry<float>("fc.scale", {1}, {2.0f}));
  });
  expect_error(import(extra), {"extra.safetensors", "unexpected tensor 'fc.scale'"});
  const std::string f64 = damaged_copy(tmp, "f64.safetensors", [](StFile& f) {
    StEntry* e = entry(f, "fc.bias");
    std::vector<float> v = values<float>(*e);
    *e = make_entry<double>("fc.bias", e->shape, std::vector<double>(v.begin(), v.end()));
  });
  expect_error(import(f64), {"f64.safetensors", "'fc.bias' is F64[10]", "F32[10]"});
  // The wrong architecture: said as such, not as a list of every tensor.
  expect_error(import(teacher_file("lenet5.safetensors")),
                 {"lenet5.safetensors", "none of preresnet8's tensors",
                  "is --model preresnet8 right"});
  expect_error(import(teacher_file("preresnet8.safetensors"), "preresnet20"),
                 {"preresnet8.safetensors", "'layer1.1.bn1.weight' is missing"});
  expect_error(import(teacher_file("preresnet8.safetensors"), "resnet9"), {"--model", "resnet9"});
  EXPECT_FALSE(fs::exists(tmp / "out.safetensors"));
  for (const std::string& name : entries_of(tmp.path))
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << "temporary file left behind: " << name;
  // The image size: preresnet8 without --pad-to sees 28x28 Fashion-MNIST.
  RunResult unpadded = run_kdlab({"import", teacher_file("preresnet8.safetensors"), "--model",
                                  "preresnet8", "--data-dir", data, "--out",
                                  tmp / "out.safetensors"},
                                 tmp.path);
  expect_error(unpadded, {"--model preresnet8", "32x32", "28x28", "--pad-to"});
  EXPECT_FALSE(fs::exists(tmp / "out.safetensors"));
}

}  // namespace
}  // namespace kd
