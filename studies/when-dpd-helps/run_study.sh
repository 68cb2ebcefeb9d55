#!/usr/bin/env bash
# "When does DPD help?" in one resumable command: stage 1 (stage1.yaml), stage 2's arm chosen by the rule fixed
# after HalfCheetah seed 0 of stage 1 was looked at, before any other stage-1 result (choose_stage2.py), stage 2 (stage2-controls.yaml: 5 more seeds of both controls;
# the chosen arm's 5 more seeds in a folder of its own), the report of both stages with study_table.py's tables, and
# stage 3 where stage3-alpha.yaml is in the study folder (alpha 0.1 / 10 of the chosen arm; reported with the rest).
#
#   nohup studies/when-dpd-helps/run_study.sh runs >> runs/study.log 2>&1 &
#
# Stop it any time (Ctrl-C, SIGTERM, the machine going away): running runs checkpoint, and the same command resumes
# where it stopped; finished sweeps are skipped in seconds. It stops at the first step that fails (a failed run, an
# incomplete stage 1) without going on to the next.
# Environment: DPD = the dpd that trains (default .venv/bin/dpd; use a checkout pinned at one commit for the whole
# study), REPORT_DPD / PYTHON = the dpd and python that report and choose (default: this checkout's .venv),
# WORKERS = runs side by side (default 2), STUDY = the folder with stage1.yaml and stage2-controls.yaml (default:
# this script's folder).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
study=${STUDY:-$here}
runs=${1:-runs}
dpd=${DPD:-$root/.venv/bin/dpd}
report_dpd=${REPORT_DPD:-$root/.venv/bin/dpd}
python=${PYTHON:-$root/.venv/bin/python}
workers=${WORKERS:-2}
mkdir -p "$runs"

report() {  # report OUT SWEEP...: one dpd report of the sweep folders, and study_table.py's tables beside it
  local out=$1; shift
  "$report_dpd" report "$@" --out "$out"
  "$python" "$here/study_table.py" "$out" "$@" > "$out/tables.md"
}

echo "run_study: stage 1 ($(date -u +%FT%TZ))"
"$dpd" sweep --config "$study/stage1.yaml" --out "$runs/study-stage1" --workers "$workers"
"$report_dpd" report "$runs/study-stage1" --out "$runs/report-stage1"

echo "run_study: stage 2's arm"
"$python" "$here/choose_stage2.py" "$runs/report-stage1" --stage1 "$study/stage1.yaml" \
    --write "$runs/stage2-arm.yaml" | tee "$runs/stage2-choice.txt"
arm=$(sed -n 's/^stage 2 arm: \([^ ]*\).*/\1/p' "$runs/stage2-choice.txt")

echo "run_study: stage 2, controls then $arm ($(date -u +%FT%TZ))"
"$dpd" sweep --config "$study/stage2-controls.yaml" --out "$runs/study-stage2-controls" --workers "$workers"
"$dpd" sweep --config "$runs/stage2-arm.yaml" --out "$runs/study-stage2-$arm" --workers "$workers"
report "$runs/report-stage2" "$runs/study-stage1" "$runs/study-stage2-controls" "$runs/study-stage2-$arm"
echo "run_study: stage 2 done ($(date -u +%FT%TZ)): $runs/report-stage2/report.md, tables.md"

# stage 3 where its sweep is there: alpha for the chosen arm on stage 1's seeds, reported beside stages 1 and 2
stage3=$study/stage3-alpha.yaml
[ -f "$stage3" ] || { echo "run_study: no $stage3: done"; exit 0; }
echo "run_study: stage 3 ($(date -u +%FT%TZ))"
"$dpd" sweep --config "$stage3" --out "$runs/study-stage3-alpha" --workers "$workers"
report "$runs/report-stage3" "$runs/study-stage1" "$runs/study-stage2-controls" "$runs/study-stage2-$arm" \
    "$runs/study-stage3-alpha"
echo "run_study: done ($(date -u +%FT%TZ)): $runs/report-stage3/report.md, tables.md"
