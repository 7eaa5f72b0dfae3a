// Interpolated initialisation (see interpolate.h).
#include "models/interpolate.h"

#include <cmath>
#include <map>
#include <vector>

#include "base/check.h"

namespace kd {
namespace models {

namespace {
std::vector<double> as_doubles(const Tensor& t) {
  switch (t.dtype()) {
    case DType::F32: {
      const std::vector<float> f = t.to_vector<float>();
      return std::vector<double>(f.begin(), f.end());
    }
    case DType::F64: return t.to_vector<double>();
    case DType::I64: {
      const std::vector<int64_t> n = t.to_vector<int64_t>();
      return std::vector<double>(n.begin(), n.end());
    }
    default: throw InputError(std::string("--init-from: unsupported dtype ") + dtype_name(t.dtype()));
  }
}
}  // namespace

void interpolate_from(Classifier& student, const Classifier& teacher, double lambda) {
  KD_INPUT_CHECK(lambda >= 0.0 && lambda <= 1.0,
                 "--init-interpolate: expected a lambda in [0, 1], got " << lambda);
  const nn::NamedTensors theirs = teacher.state_dict();
  const nn::NamedTensors ours = student.state_dict();
  KD_INPUT_CHECK(theirs.size() == ours.size(),
                 "--init-from: the checkpoint's " << teacher.arch << " has " << theirs.size()
                                                  << " state-dict entries, the student "
                                                  << student.arch << " " << ours.size());
  std::map<std::string, Tensor> mixed;
  for (size_t i = 0; i < ours.size(); ++i) {
    const std::string& name = ours[i].first;
    const Tensor& r = ours[i].second;
    const Tensor& t = theirs[i].second;
    KD_INPUT_CHECK(theirs[i].first == name && t.shape() == r.shape() && t.dtype() == r.dtype(),
                   "--init-from: entry " << i << " is " << theirs[i].first << " " << describe(t)
                                         << " in the checkpoint, " << name << " " << describe(r)
                                         << " in the student");
    KD_CHECK(r.device().is_cpu() && t.device().is_cpu(), "interpolate_from: models on the CPU");
    const std::vector<double> a = as_doubles(t), b = as_doubles(r);
    std::vector<double> v(a.size());
    for (size_t k = 0; k < v.size(); ++k) v[k] = lambda * a[k] + (1.0 - lambda) * b[k];
    Tensor out;
    switch (r.dtype()) {
      case DType::F32: {
        std::vector<float> f(v.begin(), v.end());
        out = Tensor::from_vector<float>(r.shape(), f);
        break;
      }
      case DType::F64: out = Tensor::from_vector<double>(r.shape(), v); break;
      case DType::I64: {
        std::vector<int64_t> n(v.size());
        for (size_t k = 0; k < v.size(); ++k) n[k] = static_cast<int64_t>(std::trunc(v[k]));
        out = Tensor::from_vector<int64_t>(r.shape(), n);
        break;
      }
      default: throw InputError("--init-from: entry " + name + " has an unsupported dtype");
    }
    mixed[name] = out;
  }
  student.load_state_dict(mixed, /*strict=*/true);
}

bool has_batch_norm(const Classifier& model) {
  for (const auto& [name, tensor] : model.named_buffers())
    if (name.size() >= 12 && name.compare(name.size() - 12, 12, "running_mean") == 0) return true;
  return false;
}

}  // namespace models
}  // namespace kd
