// The distillation-loss registry (see distill_losses.h).
#include "engine/distill_losses.h"

namespace kd {

namespace {
DistillLossEntry loss(const char* name, DistillKind kind, const char* help) {
  DistillLossEntry e;
  e.name = name;
  e.help = help;
  e.kind = kind;
  return e;
}
}  // namespace

const Registry<DistillLossEntry>& distill_loss_registry() {
  static const Registry<DistillLossEntry> registry(
      "distillation loss",
      {loss("fwd-ce", DistillKind::kForwardCE,
            "-tau^2 sum p log q: Hinton's soft cross-entropy (the paper's default)"),
       loss("kl", DistillKind::kKL, "KL(p || q), no tau^2"),
       loss("rev-ce", DistillKind::kReverseCE, "-tau^2 sum q log p: reverse cross-entropy"),
       loss("sym-kl", DistillKind::kSymmetricKL, "KL(p || q) + KL(q || p), no tau^2"),
       loss("brier", DistillKind::kBrier, "mean squared difference of p and q, no tau^2"),
       loss("hard-ce", DistillKind::kHardCE,
            "-tau^2 log q at the teacher's top-1 class (hard teacher labels)")});
  return registry;
}

DistillKind parse_distill_kind(const std::string& name) {
  return distill_loss_registry().find(name, "--loss").kind;
}

const std::string& distill_kind_name(DistillKind kind) {
  for (const DistillLossEntry& e : distill_loss_registry().entries())
    if (e.kind == kind) return e.name;
  throw Error("distill_kind_name: a DistillKind without a registry entry");
}

}  // namespace kd
