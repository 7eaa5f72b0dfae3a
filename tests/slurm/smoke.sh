#!/usr/bin/env bash
# Smoke test of tools/slurm-local.sh: a real one-node Slurm cluster runs two array jobs chained
# with --dependency=afterok (the shape `kdlab study --slurm` submits), then a failing job whose
# dependent must be reported as never run rather than hang. Exit 0 only if every check holds;
# 77 (skip) when the Slurm/munge packages are missing.
# shellcheck disable=SC2016  # check's conditions are single-quoted on purpose: check evals them.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
harness=$here/tools/slurm-local.sh
state=$(mktemp -d /tmp/slurm-smoke.XXXXXX)
trap '"$harness" stop "$state"; rm -rf "$state"' EXIT

rc=0; "$harness" start "$state" || rc=$?
((rc == 0)) || exit $rc  # 77 passes through as "skip"
# shellcheck disable=SC1091
source "$state/env.sh"
shared=$state/shared; mkdir -p "$shared" "$state/out"
failures=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; failures=$((failures + 1)); fi; }

cat >"$state/first.sbatch" <<EOF
#!/bin/bash
#SBATCH --array=0-2
#SBATCH --output=$state/out/first-%A_%a.out
echo "first \$SLURM_ARRAY_TASK_ID" >"$shared/first-\$SLURM_ARRAY_TASK_ID"
EOF
cat >"$state/second.sbatch" <<EOF
#!/bin/bash
#SBATCH --array=0-1
#SBATCH --output=$state/out/second-%A_%a.out
# Only runs after all of the first array succeeded, so all its files must be there.
for i in 0 1 2; do [[ -f "$shared/first-\$i" ]] || { echo "missing first-\$i"; exit 1; }; done
echo "second \$SLURM_ARRAY_TASK_ID" >"$shared/second-\$SLURM_ARRAY_TASK_ID"
EOF
first=$(sbatch --parsable "$state/first.sbatch")
second=$(sbatch --parsable --dependency=afterok:"$first" "$state/second.sbatch")
rc=0; out=$(SLURM_LOCAL_TIMEOUT=120 "$harness" wait "$state" "$first" "$second") || rc=$?
echo "$out"
check "chain: wait exits 0" '((rc == 0))'
check "chain: 5 tasks COMPLETED" '[[ $(grep -c " COMPLETED " <<<"$out") == 5 ]]'
check "chain: 5 files" '[[ $(ls "$shared" | sort | tr "\n" " ") == "first-0 first-1 first-2 second-0 second-1 " ]]'

# A failing job and a job that depends on it: the harness must fail fast, not wait forever.
failing=$(sbatch --parsable --output="$state/out/fail-%j.out" --wrap 'exit 3')
orphan=$(sbatch --parsable --output="$state/out/orphan-%j.out" --dependency=afterok:"$failing" \
  --wrap "touch $shared/orphan-ran")
rc=0; out=$(SLURM_LOCAL_TIMEOUT=60 "$harness" wait "$state" "$failing" "$orphan") || rc=$?
echo "$out"
check "failure: wait exits 1 (not 0, not the 124 timeout)" '((rc == 1))'
check "failure: failing job FAILED with exit 3" 'grep -qx "$failing FAILED NonZeroExitCode 3:0" <<<"$out"'
check "failure: dependent job CANCELLED, never satisfied" \
  'grep -qx "$orphan CANCELLED DependencyNeverSatisfied 0:0" <<<"$out"'
check "failure: dependent job never ran" '[[ ! -e $shared/orphan-ran ]]'

((failures == 0)) && echo "slurm smoke: all checks passed" || echo "slurm smoke: $failures check(s) failed"
exit $((failures > 0))
