"""Benchmark docker runs: a hello run in a container vs ``docker run``, and the image cache hit.

Run: ``python bench/docker.py [--reps 10] [--hit-reps 50]`` (needs a Docker engine and the
base image ``runner-test/python:3.11-bookworm``: ``bash scripts/ci_services.sh`` as root).

(a) Hello run: ``exp.submit(ScriptRunConfig(src, 'hello.py')).wait_for_completion()`` with
    an environment whose ``docker.enabled = True`` (user-managed, ``docker.base_image`` the
    test image; its ``runner-env:<hash>`` image built once before timing), daemon warm, vs
    ``docker run --rm --init -v SRC:/src -w /src IMAGE python3 hello.py`` of the same image
    (the docker CLI, for the baseline only). Median of --reps each, A/B interleaved with the
    order flipped every pair. Goal: median ratio <= 1.3.
(b) Image cache hit: ``DockerImageBuilder().prepare(env, log)`` on the built image, as the
    daemon calls it for every run (a new client: version and ping requests, then
    ``images.get`` of the tag): median of --hit-reps; goal < 100 ms and no build.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

# This file is bench/docker.py: with bench/ on sys.path, `import docker` would find it
# instead of the docker package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

GOAL_RATIO = 1.3
GOAL_HIT_MS = 100.0
IMAGE = "runner-test/python:3.11-bookworm"
HELLO = 'print("hello")\n'


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--hit-reps", type=int, default=50)
    parser.add_argument("--image", default=IMAGE)
    args = parser.parse_args()

    from environments.docker_image import DockerImageBuilder
    from runner import Environment, Experiment, ScriptRunConfig, daemon_client

    common.print_header(
        "docker: a hello run in a container, and the image cache hit",
        f"wall clock, median of {args.reps} interleaved pairs / {args.hit_reps} hits",
    )
    env = Environment("bench-docker")
    env.docker.enabled = True
    env.docker.base_image = args.image
    env.python.user_managed_dependencies = True

    with common.temp_workspace() as ws:
        src = Path(ws.path).parent / "src"
        src.mkdir()
        (src / "hello.py").write_text(HELLO)
        log = Path(ws.path).parent / "prep.log"
        t0 = time.perf_counter()
        prepared = DockerImageBuilder().prepare(env, log)
        first_s = time.perf_counter() - t0
        exp = Experiment(ws, "bench")
        config = ScriptRunConfig(str(src), "hello.py")
        config.run_config.environment = env

        def runner_run() -> None:
            details = exp.submit(config).wait_for_completion()
            assert details["status"] == "Completed", details

        def docker_run() -> None:
            subprocess.run(
                [
                    "docker",
                    "run",
                    "--rm",
                    "--init",
                    "-v",
                    f"{src}:/src",
                    "-w",
                    "/src",
                    str(prepared.image),
                    "python3",
                    "hello.py",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )

        try:
            runner_run()  # the daemon starts, warm from here on
            docker_run()
            a: list[float] = []
            b: list[float] = []
            for i in range(args.reps):
                pair = [(a, runner_run), (b, docker_run)]
                for out, fn in pair if i % 2 == 0 else reversed(pair):
                    t = time.perf_counter()
                    fn()
                    out.append(time.perf_counter() - t)
        finally:
            daemon_client.stop_daemon(Path(ws.path), timeout_s=30)

        hits = common.timings(args.hit_reps, lambda: DockerImageBuilder().prepare(env, log))
        rebuilt = "Step 1/" in log.read_text().split("image cache hit", 1)[-1]

    ra, rb = statistics.median(a), statistics.median(b)
    ratio = ra / rb
    hit_ms = statistics.median(hits) * 1000
    common.print_table(
        ["measure", "median s", "min s", "max s"],
        [
            ["runner: submit + wait (docker env)", f"{ra:.3f}", f"{min(a):.3f}", f"{max(a):.3f}"],
            ["docker run --rm --init", f"{rb:.3f}", f"{min(b):.3f}", f"{max(b):.3f}"],
        ],
    )
    print(f"first prepare in this process (imports docker; image may be cached): {first_s:.3f} s")
    ok_ratio = ratio <= GOAL_RATIO
    ok_hit = hit_ms < GOAL_HIT_MS and not rebuilt
    print(f"(a) ratio {ratio:.2f}x, goal <= {GOAL_RATIO}x: {common.verdict(ok_ratio)}")
    print(
        f"(b) cache hit median {hit_ms:.1f} ms (min {min(hits) * 1000:.1f}, max "
        f"{max(hits) * 1000:.1f}), rebuilt: {rebuilt}; goal < {GOAL_HIT_MS:.0f} ms, no "
        f"rebuild: {common.verdict(ok_hit)}"
    )
    return 0 if ok_ratio and ok_hit else 1


if __name__ == "__main__":
    sys.exit(main())
