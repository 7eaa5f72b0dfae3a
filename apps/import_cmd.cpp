// kdlab import (see import_cmd.h): strict state-dict checks that name the tensor, then save_model.
#include "apps/import_cmd.h"

#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/model_io.h"
#include "data/augment.h"
#include "data/datasets.h"
#include "engine/checkpoint.h"

namespace kd {
namespace apps {
namespace {

// The classifier head: the last 2-D tensor of the state dict ([classes, features]). True of every
// model here (PreResNet "fc.weight", LeNet-5 "11.weight"), whose final Linear is registered last.
std::string head_name(const nn::NamedTensors& state) {
  std::string name;
  for (const auto& kv : state)
    if (kv.second.dim() == 2) name = kv.first;
  return name;
}

// Every problem, in the model's state-dict order, then the file's unexpected names.
std::vector<std::string> state_dict_problems(const std::string& arch, int classes,
                                             const nn::NamedTensors& expected,
                                             const std::map<std::string, Tensor>& found) {
  std::vector<std::string> problems;
  const std::string head = head_name(expected);
  std::set<std::string> names;
  for (const auto& kv : expected) {
    names.insert(kv.first);
    const Tensor& want = kv.second;
    auto it = found.find(kv.first);
    std::ostringstream p;
    if (it == found.end()) {
      p << "tensor '" << kv.first << "' is missing (" << arch << " has " << dtype_name(want.dtype())
        << shape_str(want.shape()) << ")";
    } else if (it->second.shape() != want.shape() ||
               !loads_exactly_into(it->second.dtype(), want.dtype())) {  // bf16 widens
      const Tensor& got = it->second;
      p << "tensor '" << kv.first << "' is " << dtype_name(got.dtype()) << shape_str(got.shape())
        << ", " << arch << " expects " << dtype_name(want.dtype()) << shape_str(want.shape());
      // A head of the right form for another class count: the likeliest cause, said plainly.
      if (kv.first == head && got.dim() == 2 && got.size(1) == want.size(1) &&
          got.size(0) != want.size(0))
        p << ": the file's classifier has " << got.size(0) << " classes, the dataset "
          << classes;
    } else {
      continue;
    }
    problems.push_back(p.str());
  }
  for (const auto& kv : found)
    if (!names.count(kv.first))
      problems.push_back("unexpected tensor '" + kv.first + "' (" + dtype_name(kv.second.dtype()) +
                         shape_str(kv.second.shape()) + ", not in " + arch + ")");
  return problems;
}

}  // namespace

std::shared_ptr<models::Classifier> import_state_dict(const std::string& path,
                                                      const std::string& arch, int classes,
                                                      int channels) {
  std::shared_ptr<models::Classifier> model;
  try {
    model = models::make_model(arch, classes, channels, 0);
  } catch (const InputError& e) {
    throw InputError(std::string("--model: ") + e.what());
  }
  Checkpoint file = load_checkpoint(path);  // InputErrors name the path
  const nn::NamedTensors expected = model->state_dict();
  size_t known = 0;
  for (const auto& kv : expected) known += file.tensors.count(kv.first);
  // Not one name in common: another architecture's file, which a list of every tensor would hide.
  KD_INPUT_CHECK(known > 0 || file.tensors.empty(),
                 path << ": none of " << model->arch << "'s tensors is in the file (it has '"
                      << file.tensors.begin()->first << "', ...; " << model->arch << " has '"
                      << expected.front().first << "', ...): is --model " << arch << " right?");
  const std::vector<std::string> problems =
      state_dict_problems(model->arch, classes, expected, file.tensors);
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << path << ": " << problems.front();
    if (problems.size() > 1) msg << " (and " << problems.size() - 1 << " more problems)";
    throw InputError(msg.str());
  }
  model->load_state_dict(file.tensors, /*strict=*/true);
  model->eval();
  return model;
}

int run_import(const CommonOptions& common, const ImportOptions& options) {
  KD_INPUT_CHECK(!options.out.empty(), "--out: give the kdlab checkpoint to write");
  KD_INPUT_CHECK(common.pad_to >= 0,
                 "--pad-to: expected a size >= 0 (0 = off), got " << common.pad_to);
  KD_INPUT_CHECK(std::filesystem::absolute(options.out).lexically_normal() !=
                     std::filesystem::absolute(options.input).lexically_normal(),
                 "--out " << options.out << ": is the input file");
  // The dataset fixes classes, channels and image size. There is no header-only query in the
  // dataset registry, so the test split (the smaller one) is read.
  data::LoadOptions load;
  load.resize = common.resize;
  data::Dataset ds = data::load_dataset(common.dataset, common.data_dir, /*train=*/false, load);
  if (common.pad_to > 0) ds = ds.padded_to(common.pad_to);
  auto model = import_state_dict(options.input, options.model, ds.num_classes, ds.c);
  KD_INPUT_CHECK(model->image_size == ds.h && model->image_size == ds.w,
                 "--model " << options.model << ": expects " << model->image_size << "x"
                            << model->image_size << " images, dataset " << common.dataset
                            << " has " << ds.h << "x" << ds.w << " (see --pad-to)");
  const Checkpoint source = load_checkpoint(options.input);
  const data::Normalization norm = data::dataset_normalization(common.dataset, ds.c);
  std::map<std::string, std::string> meta = {
      {"role", "imported teacher"},
      {"dataset", common.dataset},
      {"pad_to", std::to_string(common.pad_to)},
      {"resize", std::to_string(common.resize)},
      {"imported_from", options.input},
      {"import_note", "PyTorch state dict (safetensors) loaded strictly by kdlab import; input "
                      "normalization assumed to be the dataset's (kdlab's for --dataset)"},
      {"source_metadata", nlohmann::json(source.metadata).dump()}};
  save_model(options.out, *model, norm.mean, norm.std, meta);
  std::cout << "imported " << options.input << " as " << model->arch << " (" << ds.num_classes
            << " classes, " << ds.c << "x" << ds.h << "x" << ds.w << " images): " << options.out
            << "\n";
  return 0;
}

}  // namespace apps
}  // namespace kd
