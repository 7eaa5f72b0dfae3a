// save_model / load_model (see model_io.h): metadata encoding and validation around checkpoints.
#include "apps/model_io.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/checkpoint.h"

namespace kd {
namespace apps {
namespace {

const char* const kNormalizationNote = "per channel, on pixels scaled to [0,1]";

// Shortest decimal that reads back as the same float: "0.4914", not "0.49140000343322754".
std::string float_array_json(const std::vector<float>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    KD_CHECK(std::isfinite(values[i]), "save_model: non-finite normalization value");
    char buf[32];
    for (int precision = 6; precision <= 9; ++precision) {
      std::snprintf(buf, sizeof buf, "%.*g", precision, double(values[i]));
      if (std::strtof(buf, nullptr) == values[i]) break;
    }
    out += (i ? ", " : "") + std::string(buf);
  }
  return out + "]";
}

const std::string& require_key(const std::map<std::string, std::string>& meta,
                               const std::string& path, const std::string& key) {
  auto it = meta.find(key);
  KD_INPUT_CHECK(it != meta.end(), path << ": metadata key '" << key << "' is missing");
  return it->second;
}

// Metadata numbers are bounded before anything is built from them: a model is allocated from
// num_classes and in_channels, so an edited or corrupt checkpoint saying 100000000 classes would
// otherwise ask for tens of gigabytes before a single tensor is compared.
constexpr long kMaxClasses = 1000000;   // ImageNet-21k has 21841; room to spare
constexpr long kMaxInChannels = 1024;   // grey, RGB, RGBA, multispectral stacks
constexpr long kMaxImageSize = 4096;    // the largest --pad-to
// Up to this many classes the model is built and then compared with the stored tensors (its
// head is then a few MB at most, whatever the file holds). Above it, the class-sized tensors are
// compared on a 2-class build of the same architecture first, so the big head is only allocated
// when the file really stores it.
constexpr int kBuildDirectlyUpTo = 1000;

int parse_int_in(const std::map<std::string, std::string>& meta, const std::string& path,
                 const std::string& key, long lo, long hi) {
  const std::string& text = require_key(meta, path, key);
  size_t used = 0;
  long value = -1;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  KD_INPUT_CHECK(used == text.size() && used > 0 && value >= lo && value <= hi,
                 path << ": metadata key '" << key << "' is '" << text
                      << "', expected an integer in [" << lo << ", " << hi << "]");
  return static_cast<int>(value);
}

// Before building a model with more than kBuildDirectlyUpTo classes: every tensor whose size
// follows the class count (a dimension that is 2 in a 2-class build of `arch`) must be stored
// with num_classes in that place. No model has another dimension of size 2, so the 2-class build
// finds exactly the classifier's weight and bias.
void check_class_sized_tensors(const std::string& path, const std::string& arch, int classes,
                               int channels, const std::map<std::string, Tensor>& stored) {
  if (classes <= kBuildDirectlyUpTo) return;
  std::shared_ptr<models::Classifier> probe;
  try {
    probe = models::make_model(arch, 2, channels, 0);
  } catch (const InputError& e) {
    throw InputError(path + ": metadata key 'model': " + e.what());
  }
  for (const auto& kv : probe->state_dict()) {
    std::vector<int64_t> want = kv.second.shape();
    if (std::find(want.begin(), want.end(), 2) == want.end()) continue;
    for (int64_t& d : want)
      if (d == 2) d = classes;
    const auto it = stored.find(kv.first);
    KD_INPUT_CHECK(it != stored.end(),
                   path << ": metadata key 'num_classes' is " << classes << ", but tensor '"
                        << kv.first << "' (" << shape_str(want) << " for that many classes) "
                        << "is not in the file");
    KD_INPUT_CHECK(it->second.shape() == want,
                   path << ": metadata key 'num_classes' is " << classes << ", but tensor '"
                        << kv.first << "' is stored as " << shape_str(it->second.shape())
                        << " (expected " << shape_str(want) << ")");
  }
}

std::vector<float> parse_float_array(const std::map<std::string, std::string>& meta,
                                     const std::string& path, const std::string& key,
                                     size_t expected_size) {
  const std::string& text = require_key(meta, path, key);
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  bool ok = parsed.is_array() && parsed.size() == expected_size;
  std::vector<float> out;
  if (ok) {
    for (const auto& v : parsed) {
      if (!v.is_number() || !std::isfinite(v.get<double>())) {
        ok = false;
        break;
      }
      out.push_back(v.get<float>());
    }
  }
  KD_INPUT_CHECK(ok, path << ": metadata key '" << key << "' is '" << text
                          << "', expected a JSON array of " << expected_size << " finite numbers");
  return out;
}

}  // namespace

void save_model(const std::string& path, const models::Classifier& model,
                const std::vector<float>& norm_mean, const std::vector<float>& norm_std,
                const std::map<std::string, std::string>& extra) {
  const size_t channels = static_cast<size_t>(model.in_channels);
  KD_CHECK(norm_mean.size() == channels && norm_std.size() == channels,
           "save_model " << path << ": normalization has " << norm_mean.size() << " means and "
                         << norm_std.size() << " stds for " << channels << " input channels");
  std::map<std::string, std::string> meta = {
      {"format", kModelFormat},
      {"model", model.arch},
      {"num_classes", std::to_string(model.num_classes)},
      {"in_channels", std::to_string(model.in_channels)},
      {"image_size", std::to_string(model.image_size)},
      {"normalization_mean", float_array_json(norm_mean)},
      {"normalization_std", float_array_json(norm_std)},
      {"normalization", kNormalizationNote},
  };
  for (const auto& kv : extra)
    KD_CHECK(meta.emplace(kv.first, kv.second).second,
             "save_model " << path << ": extra metadata key '" << kv.first
                           << "' is reserved for save_model");
  save_checkpoint(path, model.state_dict(), meta);
}

LoadedModel load_model(const std::string& path, bool allow_nonfinite) {
  Checkpoint ckpt = load_checkpoint(path);
  if (!allow_nonfinite) {
    const std::string bad = first_nonfinite(ckpt);
    KD_INPUT_CHECK(bad.empty(), path << ": tensor " << bad
                                     << ", expected finite weights and statistics (a diverged "
                                        "run?); --allow-nonfinite loads it anyway");
  }
  const auto& meta = ckpt.metadata;
  const std::string& format = require_key(meta, path, "format");
  KD_INPUT_CHECK(format == kModelFormat, path << ": metadata key 'format' is '" << format
                                              << "', expected '" << kModelFormat << "'");
  const std::string& arch = require_key(meta, path, "model");
  int classes = parse_int_in(meta, path, "num_classes", 2, kMaxClasses);
  int channels = parse_int_in(meta, path, "in_channels", 1, kMaxInChannels);
  int image_size = parse_int_in(meta, path, "image_size", 1, kMaxImageSize);
  // eval pads its data as the checkpoint's run did ("pad_to", written by train and import). A
  // padded size can only be the image size, so anything else is refused before data is padded.
  if (meta.count("pad_to")) {
    const int pad_to = parse_int_in(meta, path, "pad_to", 0, kMaxImageSize);
    KD_INPUT_CHECK(pad_to == 0 || pad_to == image_size,
                   path << ": metadata key 'pad_to' is " << pad_to << ", expected 0 or "
                        << image_size << " (the metadata's image_size)");
  }

  LoadedModel out;
  out.norm_mean = parse_float_array(meta, path, "normalization_mean", size_t(channels));
  out.norm_std = parse_float_array(meta, path, "normalization_std", size_t(channels));
  for (float s : out.norm_std)
    KD_INPUT_CHECK(s > 0, path << ": metadata key 'normalization_std' has a non-positive value");

  check_class_sized_tensors(path, arch, classes, channels, ckpt.tensors);
  try {
    out.model = models::make_model(arch, classes, channels, 0);
  } catch (const InputError& e) {
    throw InputError(path + ": metadata key 'model': " + e.what());
  }
  KD_INPUT_CHECK(out.model->image_size == image_size,
                 path << ": metadata key 'image_size' is " << image_size << ", but " << arch
                      << " takes " << out.model->image_size << "x" << out.model->image_size
                      << " images");
  try {
    out.model->load_state_dict(ckpt.tensors, /*strict=*/true);
  } catch (const InputError& e) {
    throw InputError(path + ": " + e.what());
  }
  out.model->eval();
  out.metadata = meta;
  return out;
}

}  // namespace apps
}  // namespace kd
