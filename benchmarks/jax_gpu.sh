#!/bin/bash
# The JAX engine on a GPU: does it run end to end, which pack tests hold there, and what it costs against one CPU
# core (not a test: a one-shot check for a 16-core machine with a GPU, reached by copying files, with no network).
#
#   here:   bash ../shared/tools/device-wheels.sh  (or the same pip download) -> ./.whl: gymnasium, MuJoCo, SB3
#   there:  bash benchmarks/jax_gpu.sh                   # carry .whl; writes $OUT (default ./jax-gpu-out)
#
# Uses the machine's own jax / jaxlib with their CUDA plugin, torch and numpy (their versions go to versions.txt);
# dpd from ./src. Takes ~7 min (each child process spends 20-30 s initialising CUDA and compiling). Stages, each
# under its own time limit so a slow one cannot starve the rest, in order of value:
#   1. throughput: Walker2d-v5 DDPG (paper preset), packs of 1, 16 and 64 learners on the GPU, then packs of 1 and
#      16 on one CPU core of the same machine (JAX_PLATFORMS=cpu); stock SB3 and the raw env beside, as
#      benchmarks/throughput.py always reports them (-> walker2d_gpu.json, walker2d_cpu.json)
#   2. end to end: `dpd train --engine jax` of a DPD-DDPG pair on Walker2d-v5, 2 x 10k env steps with evaluation,
#      on the GPU (-> train_summary.json: its platform block says the backend and device)
#   3. the pack and pack-distillation tests on the GPU (-> pytest_gpu.xml): the CPU-only bit-for-bit invariances
#      are expected to fail there (src/dpd/pack/batching.py: an accelerator batches with vmap); the parity tests
#      against SB3 show whether the tolerances hold on another backend
#   4. Humanoid-v5 (348-dim observations): packs of 1 and 16 with full-size (1e6) replay buffers on the GPU
#      (-> humanoid_gpu.json): the memory and rate a Humanoid grid would need there
#   5. eight processes side by side, each a pack of 16 Walker2d learners on its own core, one GPU (-> log.txt)
set -u
OUT=${OUT:-./jax-gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - T0 )) s: $*"; }

site=$(mktemp -d)
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "jax_gpu: the wheels in .whl did not install"; exit 1; }
fi
# MuJoCo renders nothing; JAX takes GPU memory as it needs it (several processes share the GPU in stages 3 and 5)
export PYTHONPATH=$site:$PWD/src MUJOCO_GL=disable PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 - <<'EOF' | tee "$OUT/versions.txt"
import os, platform, sys
import gymnasium, jax, jaxlib, mujoco, numpy, optax, stable_baselines3, torch
print("python", sys.version.split()[0], "jax", jax.__version__, "jaxlib", jaxlib.__version__, "optax", optax.__version__,
      "torch", torch.__version__, "numpy", numpy.__version__, "gymnasium", gymnasium.__version__,
      "mujoco", mujoco.__version__, "sb3", stable_baselines3.__version__)
print("jax backend", jax.default_backend(), "devices", jax.devices(), "cores", os.cpu_count(), platform.machine())
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

stamp "1. Walker2d throughput, GPU"
timeout 150 python3 benchmarks/throughput.py --engine jax --algo ddpg --env Walker2d-v5 --steps 2000 --repeats 1 \
  --pack-sizes 1,16,64 --json "$OUT/walker2d_gpu.json"
stamp "1. Walker2d throughput, one CPU core of this machine"
JAX_PLATFORMS=cpu timeout 80 python3 benchmarks/throughput.py --engine jax --algo ddpg --env Walker2d-v5 \
  --steps 2000 --repeats 1 --pack-sizes 1,16 --json "$OUT/walker2d_cpu.json"

stamp "2. dpd train --engine jax on the GPU"
timeout 75 python3 -c "import sys; from dpd._entry import main; sys.argv[0] = 'dpd'; main()" train --env Walker2d-v5 \
  --algo ddpg --preset paper --engine jax --method dpd --total-steps 20000 --seed 0 --out "$site/run" --no-progress \
  --set eval_freq=5000 --set eval_episodes=2 && cp "$site/run/summary.json" "$OUT/train_summary.json"

stamp "3. pack tests on the GPU"
# SIGINT: pytest stops, prints what ran and failed, and writes its XML
timeout -s INT 90 python3 -m pytest tests/test_pack.py tests/test_pack_distill.py -q -rfE -p no:cacheprovider -n 4 \
  -m "extended or not extended" --timeout 80 --junitxml="$OUT/pytest_gpu.xml" | tail -n 40

stamp "4. Humanoid, full-size replay buffers: GPU packs of 1 and 16"
timeout 150 python3 benchmarks/throughput.py --engine jax --algo ddpg --env Humanoid-v5 --steps 1000 --repeats 1 \
  --pack-sizes 1,16 --full-buffers --json "$OUT/humanoid_gpu.json"
stamp "5. eight packs of 16 Walker2d learners side by side, one core each, one GPU"
start=$(date +%s.%N)
pids=()
for i in 0 1 2 3 4 5 6 7; do
  # (the child sets its own XLA_FLAGS, one XLA thread, before it imports jax)
  OMP_NUM_THREADS=1 timeout 60 taskset -c "$i" python3 benchmarks/throughput.py --engine jax --algo ddpg \
    --child pack16 --env Walker2d-v5 --steps 2000 --learning-starts 100 > "$site/side_$i.json" &
  pids+=("$!")
done
wait "${pids[@]}"  # these alone: a bare `wait` also waits for the log's tee (a process substitution), for ever
end=$(date +%s.%N)
python3 - "$site" "$start" "$end" <<'EOF'
import glob, json, sys
rows = [json.loads(open(f).read().strip().splitlines()[-1]) for f in sorted(glob.glob(sys.argv[1] + "/side_*.json"))
        if open(f).read().strip()]
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"side by side: {len(rows)} of 8 packs finished; each pack's timed rate (env steps/s, compile excluded):",
      [round(r["steps_per_s"]) for r in rows])
print(f"  sum of the packs' rates {sum(r['steps_per_s'] for r in rows):.0f} env steps/s; all env steps over the whole "
      f"wall time, start-up and compile included: {sum(r['env_steps'] for r in rows) / wall:.0f} env steps/s ({wall:.0f} s)")
EOF
stamp "done"
ls -la "$OUT"
