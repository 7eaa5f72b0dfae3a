// The distillation losses by name (--loss), each with its help line; the CLI's choices and help,
// parsing, and the names written to config.json come from this one list. The maths is in
// kernels/loss.h (DistillKind) and ops::distill_loss.
#pragma once
#include <string>

#include "kernels/loss.h"
#include "base/registry.h"

namespace kd {

struct DistillLossEntry : RegistryEntry {
  DistillKind kind = DistillKind::kForwardCE;
};

const Registry<DistillLossEntry>& distill_loss_registry();
DistillKind parse_distill_kind(const std::string& name);  // InputError naming --loss
const std::string& distill_kind_name(DistillKind kind);

}  // namespace kd
