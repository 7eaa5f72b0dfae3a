// save_loop_state / load_loop_state (see loop_state.h). Tensors are stored under "model.",
// "optimizer." and "loop." prefixes; the counters are metadata strings (integers in decimal,
// seconds with 17 significant digits), the unfinished epoch's losses exact F64 tensors.
#include "apps/loop_state.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include "engine/checkpoint.h"

namespace kd {
namespace apps {
namespace {

const std::string& meta_value(const Checkpoint& ckpt, const std::string& path,
                              const std::string& key) {
  auto it = ckpt.metadata.find(key);
  KD_INPUT_CHECK(it != ckpt.metadata.end(), path << ": metadata key '" << key << "' is missing");
  return it->second;
}

int64_t meta_int(const Checkpoint& ckpt, const std::string& path, const std::string& key) {
  const std::string& text = meta_value(ckpt, path, key);
  size_t used = 0;
  long long value = -1;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  KD_INPUT_CHECK(
      used == text.size() && used > 0 && value >= 0,
      path << ": metadata key '" << key << "' is '" << text << "', expected an integer >= 0");
  return value;
}

std::map<std::string, Tensor> with_prefix(const Checkpoint& ckpt, const std::string& prefix) {
  std::map<std::string, Tensor> out;
  for (const auto& kv : ckpt.tensors)
    if (kv.first.compare(0, prefix.size(), prefix) == 0)
      out[kv.first.substr(prefix.size())] = kv.second;
  return out;
}

Checkpoint load_state_file(const std::string& path) {
  Checkpoint ckpt = load_checkpoint(path);
  const std::string& format = meta_value(ckpt, path, "format");
  KD_INPUT_CHECK(format == kLoopStateFormat, path << ": metadata key 'format' is '" << format
                                                  << "', expected '" << kLoopStateFormat << "'");
  return ckpt;
}

}  // namespace

void save_loop_state(const std::string& path, const LoopShape& shape, const nn::Module& model,
                     const Optimizer& optimizer, const LoopPosition& position) {
  KD_CHECK(position.losses.size() == position.counts.size() &&
               int64_t(position.losses.size()) == position.step_in_epoch,
           "save_loop_state: " << position.losses.size() << " losses for " << position.step_in_epoch
                               << " steps");
  nn::NamedTensors tensors;
  for (auto& kv : model.state_dict()) tensors.emplace_back("model." + kv.first, kv.second);
  for (auto& kv : optimizer.state()) tensors.emplace_back("optimizer." + kv.first, kv.second);
  const int64_t n = int64_t(position.losses.size());
  // A 0-length tensor is legal safetensors, but keep the shapes non-empty for readers that
  // dislike them: one padding slot, the count of real entries is step_in_epoch.
  std::vector<double> losses = position.losses;
  std::vector<int64_t> counts = position.counts;
  losses.push_back(0), counts.push_back(0);
  tensors.emplace_back("loop.losses", Tensor::from_vector<double>({n + 1}, losses));
  tensors.emplace_back("loop.counts", Tensor::from_vector<int64_t>({n + 1}, counts));
  char seconds[40];
  std::snprintf(seconds, sizeof seconds, "%.17g", position.seconds);
  save_checkpoint(path, tensors,
                  {{"format", kLoopStateFormat},
                   {"loop", shape.label},
                   {"epochs", std::to_string(shape.epochs)},
                   {"batches_per_epoch", std::to_string(shape.batches_per_epoch)},
                   {"epoch", std::to_string(position.epoch)},
                   {"step_in_epoch", std::to_string(position.step_in_epoch)},
                   {"steps_done", std::to_string(position.steps_done)},
                   {"seconds", seconds}});
}

LoopPosition load_loop_state(const std::string& path, const LoopShape& shape, nn::Module& model,
                             Optimizer& optimizer) {
  Checkpoint ckpt = load_state_file(path);
  KD_INPUT_CHECK(meta_int(ckpt, path, "epochs") == shape.epochs &&
                     meta_int(ckpt, path, "batches_per_epoch") == shape.batches_per_epoch,
                 path << ": written by a loop of " << meta_value(ckpt, path, "epochs")
                      << " epochs of " << meta_value(ckpt, path, "batches_per_epoch")
                      << " batches, this one has " << shape.epochs << " of "
                      << shape.batches_per_epoch);
  KD_INPUT_CHECK(meta_value(ckpt, path, "loop") == shape.label,
                 path << ": the state of '" << meta_value(ckpt, path, "loop") << "', not of '"
                      << shape.label << "'");
  LoopPosition pos;
  pos.epoch = int(meta_int(ckpt, path, "epoch"));
  pos.step_in_epoch = meta_int(ckpt, path, "step_in_epoch");
  pos.steps_done = meta_int(ckpt, path, "steps_done");
  KD_INPUT_CHECK(pos.epoch <= shape.epochs && pos.step_in_epoch < shape.batches_per_epoch &&
                     (pos.epoch < shape.epochs || pos.step_in_epoch == 0) &&
                     pos.steps_done == pos.epoch * shape.batches_per_epoch + pos.step_in_epoch,
                 path << ": inconsistent position (epoch " << pos.epoch << ", step "
                      << pos.step_in_epoch << ", steps done " << pos.steps_done << ")");
  const std::string& seconds = meta_value(ckpt, path, "seconds");
  char* end = nullptr;
  pos.seconds = std::strtod(seconds.c_str(), &end);
  KD_INPUT_CHECK(end && *end == '\0' && !seconds.empty() && pos.seconds >= 0,
                 path << ": metadata key 'seconds' is '" << seconds << "'");
  auto loop = with_prefix(ckpt, "loop.");
  const int64_t n = pos.step_in_epoch + 1;
  KD_INPUT_CHECK(
      loop.size() == 2 && loop.count("losses") && loop.count("counts") &&
          loop["losses"].dtype() == DType::F64 && loop["counts"].dtype() == DType::I64 &&
          loop["losses"].shape() == Shape{n} && loop["counts"].shape() == Shape{n},
      path << ": expected loop.losses (F64) and loop.counts (I64) of " << n << " entries");
  const double* losses = loop["losses"].data<double>();
  const int64_t* counts = loop["counts"].data<int64_t>();
  pos.losses.assign(losses, losses + pos.step_in_epoch);
  pos.counts.assign(counts, counts + pos.step_in_epoch);
  try {
    model.load_state_dict(with_prefix(ckpt, "model."), /*strict=*/true);
  } catch (const InputError& e) {
    throw InputError(path + ": " + e.what());
  }
  optimizer.load_state(with_prefix(ckpt, "optimizer."), path);
  const size_t expected = model.state_dict().size() + optimizer.state().size() + 2;
  KD_INPUT_CHECK(ckpt.tensors.size() == expected,
                 path << ": " << ckpt.tensors.size() << " tensors, expected " << expected
                      << " (model., optimizer. and loop. entries only)");
  return pos;
}

int finished_epochs(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return 0;
  Checkpoint ckpt = load_state_file(path);
  return int(meta_int(ckpt, path, "epoch"));
}

}  // namespace apps
}  // namespace kd
