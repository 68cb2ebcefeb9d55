"""A sweep on a many-core machine without the CLI's extra dependencies (used for the reproduction runs).

    PYTHONPATH=src python benchmarks/device_sweep.py OUT ENV TOTAL_STEPS SEEDS WORKERS [key=value ...]

Runs dpd vs vanilla PPO (zoo preset) with ``dpd.experiments.sweep.run_sweep`` into OUT/<env>; the report is made
afterwards with ``dpd report OUT/<env>`` where rliable and matplotlib are installed. TensorBoard files are off.
"""

import sys
import time

from dpd.experiments.sweep import SweepSpec, run_sweep

if __name__ == "__main__":
    out, env, total, seeds, workers, *overrides = sys.argv[1:]
    spec = SweepSpec(envs=[env], total_steps=int(total), seeds=list(range(int(seeds))),
                     overrides=["tensorboard=false", *overrides])
    start = time.time()
    result = run_sweep(spec, f"{out}/{env}", workers=int(workers),
                       on_update=lambda s: print(f"{time.time() - start:6.0f}s {env} {s['done']}/{s['total']} done, "
                                                 f"{len(s['running'])} running, {s['failed']} failed", flush=True))
    print(env, result.as_dict(), f"{time.time() - start:.0f}s", flush=True)
