// save_model / load_model (see model_io.h): metadata encoding and validation around checkpoints.
#include "apps/model_io.h"

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

int parse_positive_int(const std::map<std::string, std::string>& meta, const std::string& path,
                       const std::string& key) {
  const std::string& text = require_key(meta, path, key);
  size_t used = 0;
  long value = -1;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  KD_INPUT_CHECK(
      used == text.size() && used > 0 && value > 0 && value < (1L << 30),
      path << ": metadata key '" << key << "' is '" << text << "', expected a positive integer");
  return static_cast<int>(value);
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
  int classes = parse_positive_int(meta, path, "num_classes");
  int channels = parse_positive_int(meta, path, "in_channels");
  int image_size = parse_positive_int(meta, path, "image_size");

  LoadedModel out;
  out.norm_mean = parse_float_array(meta, path, "normalization_mean", size_t(channels));
  out.norm_std = parse_float_array(meta, path, "normalization_std", size_t(channels));
  for (float s : out.norm_std)
    KD_INPUT_CHECK(s > 0, path << ": metadata key 'normalization_std' has a non-positive value");

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
