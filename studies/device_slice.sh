#!/bin/bash
# A slice of long sweeps on a many-core machine available for minutes at a time and reached only by copying files
# (no network there, a cap on what travels): the sweeps' unfinished and pending runs train there side by side for
# T seconds, checkpoint on SIGTERM, come back, and resume here with `dpd sweep` (the parts add up: a run's checkpoint
# holds plain data, readable by any Python / torch version).
#
#   here:   studies/device_slice.sh pack COMMIT RUNS NAME:CONFIG:WORKERS...   # fills ./.devstudy (git-ignored)
#   there:  T=450 bash studies/device_slice.sh run                          # carry .devstudy and .whl
#   here:   studies/device_slice.sh merge RUNS FILES_AT                     # the files the run sent back
#
# pack: .devstudy/ gets the dpd source at COMMIT (the commit the study is pinned at; `git archive`), each sweep's
#   YAML, and each sweep folder RUNS/NAME slimmed to what the run needs: a finished run as its summary.json alone
#   (so the sweep skips it), an unfinished one whole, packed with xz. WORKERS: that sweep's runs side by side there
#   (the sum: the machine's cores). Stop the sweeps here first: a run must not train in two places.
# run: installs the wheels in ./.whl (offline; studies/README.md), runs every sweep through studies/device_sweep.py
#   for T seconds (default 450), SIGTERM, then packs every run folder that is not a finished one into $OUT in pieces
#   of 15 MiB (at most 8 files of 16 MiB come back from that machine), with the logs and the library versions used there.
# merge: unpacks those runs into RUNS/NAME/runs (replacing the copies there), the logs into RUNS/device-logs/DATE.
# Used for the 1M-step study (docs/reproduction.md section 1): two slices, 450 s and 240 s, on 16 cores.
set -euo pipefail
cmd=${1:?usage: device_slice.sh pack COMMIT RUNS NAME:CONFIG:WORKERS... | run | merge RUNS FILES_AT}
shift
# DEVSTUDY: the folder that travels (default .devstudy, git-ignored); WHEELS: the wheels installed there before
# anything runs (default .whl, skipped when absent); PYTHON: the python there (default python3)
D=${DEVSTUDY:-.devstudy}
WHEELS=${WHEELS:-.whl}
PYTHON=${PYTHON:-python3}

busy() {  # refuse when a run of sweep folder $1 is being trained here (dpd holds a flock on RUN/.lock meanwhile)
  local lock
  for lock in "$1"/runs/*/.lock; do
    [ -e "$lock" ] || continue
    flock -n "$lock" true || { echo "device_slice: $(dirname "$lock") is training here; stop its sweep first (a run" \
                                    "must not train in two places)" >&2; exit 1; }
  done
}

case "$cmd" in
pack)
  commit=$1 runs=$2; shift 2
  for spec in "$@"; do  # NAME:CONFIG:WORKERS, each part there
    IFS=: read -r name config workers <<< "$spec"
    [ -n "$name" ] && [ -f "$config" ] && [[ "$workers" =~ ^[1-9][0-9]*$ ]] || {
      echo "device_slice: '$spec': give NAME:CONFIG:WORKERS (a sweep folder's name under $runs, its YAML, runs side by side)" >&2
      exit 1; }
  done
  [ "$D" != .devstudy ] || grep -qxF "/$D/" .git/info/exclude 2>/dev/null || echo "/$D/" >> .git/info/exclude
  for spec in "$@"; do busy "$runs/${spec%%:*}"; done
  rm -rf "$D" && mkdir -p "$D/configs" "$D/sweeps"
  git archive "$commit" src | tar -x -C "$D"
  : > "$D/plan"
  for spec in "$@"; do
    IFS=: read -r name config workers <<< "$spec"
    cp "$config" "$D/configs/$name.yaml"
    echo "$name $workers" >> "$D/plan"
    [ -f "$runs/$name/sweep.yaml" ] || continue  # a sweep not started here: it starts there
    mkdir -p "$D/sweeps/$name/runs"
    cp "$runs/$name/sweep.yaml" "$D/sweeps/$name/"
    for run in "$runs/$name"/runs/*/; do
      [ -d "$run" ] || continue  # an empty runs folder: the glob itself
      run=$(basename "$run")
      if [ -f "$runs/$name/runs/$run/summary.json" ]; then
        mkdir -p "$D/sweeps/$name/runs/$run"
        cp "$runs/$name/runs/$run/summary.json" "$D/sweeps/$name/runs/$run/"
      else
        tar -c -C "$runs/$name/runs" "$run" | xz -1 -T0 > "$D/sweeps/$name/runs/$run.tar.xz"
      fi
    done
  done
  du -sh "$D"; cat "$D/plan"
  ;;
run)
  T=${T:-450}
  site=$(mktemp -d)
  if [ -d "$WHEELS" ]; then  # the machine lacks gymnasium, MuJoCo and SB3: wheels carried along, installed offline
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$WHEELS"/*.whl
  fi
  # CUDA hidden: SB3's "auto" device would put these small networks on the GPU, slower than one core each
  export PYTHONPATH=$site:$(cd "$D" && pwd)/src CUDA_VISIBLE_DEVICES= PYTHONUNBUFFERED=1 MUJOCO_GL=disable
  "$PYTHON" -c "import sys, torch, numpy, gymnasium, stable_baselines3, mujoco; print('python', sys.version.split()[0],
  'torch', torch.__version__, 'numpy', numpy.__version__, 'gymnasium', gymnasium.__version__,
  'sb3', stable_baselines3.__version__, 'mujoco', mujoco.__version__)" | tee "$OUT/versions.txt"
  echo "cores $(nproc), T $T s" | tee -a "$OUT/versions.txt"
  for packed in "$D"/sweeps/*/runs/*.tar.xz; do
    [ -e "$packed" ] || continue
    xz -d < "$packed" | tar -x -C "$(dirname "$packed")" && rm "$packed"
  done
  pids=()
  while read -r name workers; do
    timeout -k 60 -s TERM "$T" "$PYTHON" studies/device_sweep.py --config "$D/configs/$name.yaml" "$D/sweeps/$name" \
      "$workers" > "$OUT/$name.log" 2>&1 &
    pids+=("$!:$name")
  done < "$D/plan"
  failed=0
  for p in "${pids[@]}"; do  # 124: stopped at T (its runs checkpointed); anything else: that sweep broke
    rc=0; wait "${p%%:*}" || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 124 ] || { echo "device_slice: sweep ${p#*:} exited $rc (see ${p#*:}.log)"; failed=1; }
  done
  tail -n 2 "$OUT"/*.log
  # every run that trained there (finished ones were carried as a summary alone, with no config.yaml)
  (cd "$D/sweeps" && find . -mindepth 4 -maxdepth 4 -name config.yaml -printf '%h\n' > "$site/runs.txt"
   tar -c -T "$site/runs.txt" ./*/sweep.yaml) | xz -1 -T0 | split -b 15M - "$OUT/runs.tar.xz."
  ls -la "$OUT"
  exit "$failed"
  ;;
merge)
  runs=$1 files=$2
  compgen -G "$files/runs.tar.xz.*" >/dev/null || { echo "device_slice: no runs.tar.xz.* in $files (give the folder" \
                                                      "the run's \$OUT came back to)" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT  # also when a run is found training here and nothing is merged
  cat "$files"/runs.tar.xz.* | xz -d | tar -x -C "$tmp"
  for sweep in "$tmp"/*/; do busy "$runs/$(basename "$sweep")"; done
  for sweep in "$tmp"/*/; do
    name=$(basename "$sweep")
    mkdir -p "$runs/$name/runs"
    [ -f "$runs/$name/sweep.yaml" ] || cp "$sweep/sweep.yaml" "$runs/$name/"
    for run in "$sweep"runs/*/; do
      [ -d "$run" ] || continue
      rm -rf "$runs/$name/runs/$(basename "$run")"
      mv "$run" "$runs/$name/runs/"
      echo "merged $name/$(basename "$run")"
    done
  done
  logs="$runs/device-logs/$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$logs" && cp "$files"/*.log "$files"/versions.txt "$logs/"
  ;;
*)
  echo "device_slice: unknown command $cmd (pack | run | merge)" >&2; exit 2
  ;;
esac
