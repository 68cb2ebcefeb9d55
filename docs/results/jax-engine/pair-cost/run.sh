#!/bin/bash
# old (7088abe, /work/paper-w) and new (main working tree) alternately, one core
cd /work/main
for r in 1 2; do
  taskset -c 1 /work/paper-w/.venv/bin/python benchmarks/pair_cost.py --steps 5000 --repeats 1 --json /tmp/pc/old_$r.json 2>&1 | grep -v Warn
  taskset -c 1 .venv/bin/python benchmarks/pair_cost.py --steps 5000 --repeats 1 --json /tmp/pc/new_$r.json 2>&1 | grep -v Warn
done
