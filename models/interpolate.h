// The interpolated student initialisation of the paper's Fig. 6b/c and Table 1 (paper-notes §5):
// θ_student = λ·θ_teacher + (1 − λ)·θ_random over EVERY state-dict entry (weights, biases, norm
// affine parameters, and BatchNorm's running statistics and num_batches_tracked), so λ = 0 is the
// random student and λ = 1 the teacher, exactly.
#pragma once
#include "models/classifier.h"

namespace kd {
namespace models {

// In place on `student` (which holds θ_random). Both models on the CPU with the same state-dict
// names, shapes and dtypes (an InputError naming the first entry that differs otherwise). Sums in
// double; a floating entry is rounded to its dtype, an integer one truncated toward zero (as
// PyTorch's copy of a float tensor into an int64 buffer does). λ must lie in [0, 1].
void interpolate_from(Classifier& student, const Classifier& teacher, double lambda);

// Whether the model has BatchNorm running statistics (the re-estimation pass that follows an
// interpolation applies only then).
bool has_batch_norm(const Classifier& model);

}  // namespace models
}  // namespace kd
