// Stage CKA over a dataset (see cka.h): one ordered pass, both models' pooled stage outputs per
// batch, engine/cka.h's linear CKA per stage in double, averaged over batches.
#include "apps/cka.h"

#include "apps/experiment.h"
#include "engine/cka.h"

namespace kd {
namespace apps {

namespace {
std::vector<double> host_doubles(const Tensor& t) {
  if (t.dtype() == DType::F64) return t.to_vector<double>();
  const std::vector<float> values = t.to_vector<float>();
  return std::vector<double>(values.begin(), values.end());
}
}  // namespace

void check_cka_models(const models::Classifier& student, const models::Classifier& teacher,
                      const std::string& flag) {
  for (const models::Classifier* m : {&student, &teacher})
    KD_INPUT_CHECK(m->has_stages(), flag << ": model " << m->arch
                                         << " has no stages (CKA compares PreResNet stages)");
}

StageCka measure_stage_cka(models::Classifier& student, models::Classifier& teacher,
                           const data::Dataset& ds, const data::Normalization& norm,
                           Device device, int batch) {
  KD_INPUT_CHECK(batch >= 2, "--cka-batch: expected at least 2 examples per batch, got " << batch);
  check_cka_models(student, teacher, "--cka");
  student.eval();
  teacher.eval();
  StageCka out;
  std::vector<double> sums;
  for_each_eval_batch(ds, norm, device, batch, [&](const Tensor& images, const Tensor&) {
    std::vector<Tensor> s = student.forward_stages(images, nullptr);
    std::vector<Tensor> t = teacher.forward_stages(images, nullptr);
    KD_INPUT_CHECK(s.size() == t.size(), "--cka: the student " << student.arch << " has "
                                             << s.size() << " stages, the teacher "
                                             << teacher.arch << " " << t.size());
    if (sums.empty()) sums.assign(s.size(), 0.0);
    std::vector<double> values;
    for (size_t k = 0; k < s.size(); ++k) {
      const std::vector<double> tk = host_doubles(t[k]), sk = host_doubles(s[k]);
      try {
        values.push_back(linear_cka(tk, t[k].size(0), t[k].size(1), sk, s[k].size(1)));
      } catch (const Error&) {
        // Undefined on this batch (one row, or a stage constant over the batch): left out of the
        // mean and counted, rather than a NaN that would poison it.
        ++out.skipped_batches;
        return;
      }
    }
    for (size_t k = 0; k < values.size(); ++k) sums[k] += values[k];
    ++out.batches;
  });
  KD_INPUT_CHECK(out.batches > 0, "--cka: CKA is undefined on every batch of " << ds.n
                                      << " images (batches of " << batch << ")");
  for (double s : sums) out.per_stage.push_back(s / out.batches);
  return out;
}

nlohmann::json cka_json(const StageCka& cka, int batch, const std::string& teacher_path) {
  return {{"teacher", teacher_path},
          {"per_stage", cka.per_stage},
          {"batch", batch},
          {"batches", cka.batches},
          {"skipped_batches", cka.skipped_batches},
          {"kind", "linear"},
          {"features", "stage outputs (preacts), average-pooled over H and W"}};
}

}  // namespace apps
}  // namespace kd
