// CKA between a teacher's and a student's stage representations (paper Table 1): for every test
// batch (dataset order, unaugmented, a fixed batch size), linear CKA (engine/cka.h) between the
// two models' outputs of each stage average-pooled over H and W, then the mean over batches. The
// mean is unweighted, one term per batch as in the paper's code (len(loader) terms: a smaller
// last batch weighs as much as a full one). With an ensemble of teachers, CKA is reported per
// teacher (CKA is defined between two networks; a mean over members' features would be a new
// metric).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/augment.h"
#include "data/dataset.h"
#include "engine/device.h"
#include "models/classifier.h"

namespace kd {
namespace apps {

// The paper code's dataloader batch (config dataloader.batch_size); `eval --cka-batch` changes it.
constexpr int kDefaultCkaBatch = 128;

struct StageCka {
  std::vector<double> per_stage;  // mean over batches, one value per stage
  int batches = 0;                // batches averaged
  int skipped_batches = 0;        // batches where CKA is undefined (a single row, no variance)
};

// Refuses (InputError naming `flag` and the model) a model without stages, or two models with
// different numbers of stages.
void check_cka_models(const models::Classifier& student, const models::Classifier& teacher,
                      const std::string& flag);

// Both models run in eval mode. `batch` >= 2.
StageCka measure_stage_cka(models::Classifier& student, models::Classifier& teacher,
                           const data::Dataset& ds, const data::Normalization& norm,
                           Device device, int batch);

// {"batch": B, "batches": k, "skipped_batches": s, "per_stage": [...], "teacher": path}
nlohmann::json cka_json(const StageCka& cka, int batch, const std::string& teacher_path);

}  // namespace apps
}  // namespace kd
