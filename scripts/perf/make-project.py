#!/usr/bin/env python3
"""Write a throw-away Flightdeck project with one big generated workflow, for timing
`flightdeck run` as a whole process (see notes/perf.md).

    scripts/perf/make-project.py DIR [--shape layered|fan|chain] [--tasks N]
                                     [--latency-ms MS] [--max-parallel P]
    /usr/bin/time -v target/release/flightdeck --project-dir DIR run workflows/big.yaml

Shapes, as in benches/engine.rs: `layered` is layers of 100 tasks, each depending on 1-3
tasks of the layer before (fixed seed); `fan` is 1 -> N-2 -> 1; `chain` is a line.
"""

import argparse
import os
import random

SETTINGS = """default_role: admin
backends:
  sim:
    kind: sim
    latency_min: {latency}ms
    latency_max: {latency}ms
"""

AGENT = """---
name: worker
description: Does any work at all
max_instances: {max_parallel}
---
You work.
"""


def task(out, task_id, deps):
    out.append(f"  - id: {task_id}\n    description: step {task_id}\n    agent: worker\n")
    if deps:
        out.append(f"    depends_on: [{', '.join(deps)}]\n")


def workflow(shape, tasks, max_parallel):
    out = [f"name: big\nmax_parallel: {max_parallel}\ntasks:\n"]
    if shape == "chain":
        for i in range(tasks):
            task(out, f"t{i}", [f"t{i - 1}"] if i else [])
    elif shape == "fan":
        task(out, "root", [])
        middle = [f"t{i}" for i in range(tasks - 2)]
        for task_id in middle:
            task(out, task_id, ["root"])
        task(out, "sink", middle)
    else:
        width = 100
        rng = random.Random(42)
        previous = []
        for layer in range(tasks // width):
            current = [f"l{layer}_{j}" for j in range(width)]
            for task_id in current:
                count = min(rng.randint(1, 3), len(previous))
                task(out, task_id, rng.sample(previous, count))
            previous = current
    return "".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--shape", choices=["layered", "fan", "chain"], default="layered")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--max-parallel", type=int, default=8)
    args = parser.parse_args()
    os.makedirs(os.path.join(args.dir, "agentpool", "tier1-core"), exist_ok=True)
    os.makedirs(os.path.join(args.dir, "workflows"), exist_ok=True)
    with open(os.path.join(args.dir, "flightdeck.yaml"), "w") as f:
        f.write(SETTINGS.format(latency=args.latency_ms))
    with open(os.path.join(args.dir, "agentpool", "tier1-core", "worker.md"), "w") as f:
        f.write(AGENT.format(max_parallel=args.max_parallel))
    with open(os.path.join(args.dir, "workflows", "big.yaml"), "w") as f:
        f.write(workflow(args.shape, args.tasks, args.max_parallel))


if __name__ == "__main__":
    main()
