#!/usr/bin/env bash
# Stage B's report from whatever has finished (safe while the runs train): the rule's verdicts (stageB.py; "none
# yet" until seeds 0-7 of every arm are in on both tasks), dpd report's tables and learning curves of the same runs,
# and the archive of the runs' small files. Usage, from the repository root:
#   studies/why-and-ddpg/stageB-report.sh runs [docs/results/why-and-ddpg]
set -euo pipefail
RUNS=$1; OUT=${2:-docs/results/why-and-ddpg}
folders=()
for f in why-A-ddpg why-B-dpd why-B-controls why-B-controls-tail why-B-controls-s7 why-B-seeds89-hc why-B-seeds89-w2d; do
  [ -f "$RUNS/$f/sweep.yaml" ] && folders+=("$RUNS/$f")
done
python studies/why-and-ddpg/stageB.py "${folders[@]}" --out "$OUT/stageB" > /dev/null
dpd report "${folders[@]}" --out "$OUT/stageB/report" > /dev/null
names=(); for f in "${folders[@]}"; do [ "$(basename "$f")" != why-A-ddpg ] && names+=("$(basename "$f")"); done
python studies/why-and-ddpg/archive.py save "$RUNS" "$OUT/runs-stageB.tar.gz" "${names[@]}"
echo "stage B report: $OUT/stageB/stageB.md, $OUT/stageB/report/report.md"
