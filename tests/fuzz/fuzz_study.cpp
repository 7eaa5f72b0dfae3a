// Fuzz target: experiment files (apps/study_spec.h): parse_study_text, then plan_study at the
// file's default scale, as `kdlab study FILE` does before any run starts: variables, ${...}
// expressions, "for" expansion, @references, the runs' flags through the CLI's own parser, cycles.
#include "apps/study_spec.h"
#include "tests/fuzz/fuzz_target.h"

KD_FUZZ_TARGET(study) {
  const std::string source = "fuzz-study.json";
  const kd::apps::Json doc = kd::apps::parse_study_text(kd::fuzz::as_text(data, size), source);
  kd::apps::plan_study(doc, source, "", {}, kd::fuzz::scratch_dir() + "/study", {"--device", "cpu"});
}
