"""Benchmark environment preparation: a cold pip build vs raw uv, cache hits, conda from a channel.

Run: ``python bench/envs.py [--reps 5] [--hit-reps 200] [--submit-reps 10] [--conda-reps 5]``

(a) Cold pip environment (pip packages ``six==1.16.0``, ``packaging``):
    ``VenvBuilder(EnvironmentCache(EMPTY)).prepare(env, log)`` (lock, venv, install, freeze
    into the lock, marker; an empty cache folder each time) vs the raw commands
    ``uv venv --python PY DIR`` then ``uv pip install --python DIR/bin/python six==1.16.0
    packaging`` into an empty temp folder. Same uv binary, same base interpreter, same
    environment variables (``environments.venv.uv_environment()``), and uv's own download
    cache shared and warmed by one untimed build of each side first, so both install from
    it. Median of --reps each, A/B interleaved with the order flipped every pair.
    Goal: median ratio <= 1.2. uv still asks the index whether its cached pages are fresh
    (each time, when a proxy strips Cache-Control); ``--offline`` sets ``UV_OFFLINE=1`` for
    both sides after the warm-up, which leaves runner's own overhead alone.
(b) Cache hit: ``builder_for(env).prepare(env, log)`` (what the daemon calls for every run)
    on the built environment: median of --hit-reps; goal < 50 ms. Through a whole submit:
    the wall time of ``exp.submit(ScriptRunConfig(src, 'hello.py')).wait_for_completion()``
    with that cached pip environment minus the same run with a user-managed environment
    whose ``interpreter_path`` is the same venv's python (so that both run the script with
    one interpreter and the difference is the hit: prepare, storing the lock with the run),
    daemon warm, median of --submit-reps pairwise differences, interleaved; also held to
    the 50 ms goal.
(c) conda (information, no goal): ``CondaBuilder(EnvironmentCache(EMPTY)).prepare(env,
    log)`` of ``pyhello`` from the local channel of ``tests/environments/conda_channel.py``
    (3 packages: a python shim, pyhello, hello-data), an empty cache and package cache each
    time: solve (py-rattler worker), conda-lock file, install (py-rattler worker). Median of
    --conda-reps after one untimed build (the first in a process also imports conda-lock,
    shown apart); phases from the build log; and the conda cache hit.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import common

GOAL_COLD = 1.2
GOAL_HIT_MS = 50.0
PACKAGES = ("six==1.16.0", "packaging")
HELLO = 'print("hello")\n'
_PHASES = {
    "solve (worker)": re.compile(r"^conda: solved \d+ package\(s\) in ([\d.]+) s", re.M),
    "write conda-lock.yml": re.compile(r"^conda: wrote .* in ([\d.]+) s", re.M),
    "install from the lock (worker)": re.compile(
        r"^conda: installed from the lock in ([\d.]+) s", re.M
    ),
}


def pip_env(name: str = "bench-pip"):
    """The pip environment of (a) and (b)."""
    from runner import CondaDependencies, Environment

    env = Environment(name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=list(PACKAGES), python_version=version
    )
    return env


class Counter:
    """Fresh folder names under one root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0

    def __call__(self, prefix: str) -> Path:
        self.n += 1
        return self.root / f"{prefix}-{self.n}"


def cold_pip(tmp: Path, reps: int, offline: bool) -> tuple[list[float], list[float], str]:
    """(a): runner's cold prepare vs raw uv; returns both time lists and the uv version."""
    from environments.cache import EnvironmentCache
    from environments.venv import VenvBuilder, find_interpreter, find_uv, uv_environment

    uv = find_uv()
    python = find_interpreter(f"{sys.version_info.major}.{sys.version_info.minor}")
    uv_env = uv_environment()
    fresh = Counter(tmp / "cold")
    env = pip_env()

    def runner_side() -> None:
        root = fresh("runner")
        prepared = VenvBuilder(EnvironmentCache(root)).prepare(env, root.with_suffix(".log"))
        if not Path(prepared.python).exists():
            raise SystemExit(f"FAIL: {prepared.python} missing after prepare")

    def raw_side() -> None:
        folder = fresh("raw") / "venv"
        folder.parent.mkdir(parents=True)
        for argv in (
            [uv, "venv", "--python", python, str(folder)],
            [uv, "pip", "install", "--python", str(folder / "bin" / "python"), *PACKAGES],
        ):
            subprocess.run(
                argv,
                env=uv_env,
                cwd=folder.parent,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )

    runner_side()  # untimed: warms uv's cache (downloads, index pages) and imports
    raw_side()
    if offline:  # both sides from uv's cache only: no index revalidation over the network
        os.environ["UV_OFFLINE"] = uv_env["UV_OFFLINE"] = "1"
    try:
        ta, tb = common.interleaved(reps, runner_side, raw_side)
    finally:
        if offline:
            os.environ.pop("UV_OFFLINE", None)
    version = subprocess.run(
        [uv, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return ta, tb, version


def hit_prepare(tmp: Path, reps: int) -> list[float]:
    """(b): prepare of a built environment, as the daemon calls it, ``reps`` times."""
    from environments.selection import builder_for

    env = pip_env()
    log = tmp / "hit.log"
    builder_for(env).prepare(env, log)  # builds it (RUNNER_ENV_CACHE is set by main)
    return common.timings(reps, lambda: builder_for(env).prepare(env, log))


def hit_submit(tmp: Path, reps: int) -> tuple[list[float], list[float]]:
    """(b): a run with the cached pip environment vs a user-managed run, daemon warm."""
    from runner import Experiment, ScriptRunConfig, Workspace, daemon_client

    ws = Workspace.create(tmp / "ws")
    exp = Experiment(ws, "bench-envs")
    src = tmp / "src"
    src.mkdir()
    (src / "hello.py").write_text(HELLO)
    from environments.selection import builder_for
    from runner import Environment

    env = pip_env()
    # The same interpreter on both sides (a venv's python starts faster than a base
    # python with many .pth files): the user-managed run uses the cached venv's python.
    same_python = Environment("bench-user-managed")
    same_python.python.user_managed_dependencies = True
    same_python.python.interpreter_path = builder_for(env).prepare(env, tmp / "x.log").python

    def submit(with_env: bool) -> Callable[[], None]:
        def fn() -> None:
            config = ScriptRunConfig(str(src), "hello.py")
            config.run_config.environment = env if with_env else same_python
            details = exp.submit(config).wait_for_completion()
            if details["status"] != "Completed":
                raise SystemExit(f"FAIL: a run ended {details['status']}")

        return fn

    try:
        for _ in range(3):  # untimed: start the daemon, build/hit the environment, warm up
            submit(True)()
            submit(False)()
        return common.interleaved(reps, submit(True), submit(False))
    finally:
        daemon_client.stop_daemon(ws.path)
        ws._store.close()


def conda_builds(tmp: Path, reps: int) -> tuple[float, list[float], dict[str, list[float]], float]:
    """(c): (first build, later builds, phases of the later builds, cache hit) in seconds."""
    from environments.cache import EnvironmentCache
    from environments.conda import CondaBuilder, conda_platform
    from runner import CondaDependencies, Environment
    from tests.environments.conda_channel import build_channel

    channel = build_channel(tmp / "channel", conda_platform())
    cd = CondaDependencies.create(
        conda_packages=["pyhello"],
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
    )
    cd.remove_channel("conda-forge")
    cd.add_channel(channel.url)
    env = Environment("bench-conda")
    env.python.conda_dependencies = cd
    fresh = Counter(tmp / "conda")
    phases: dict[str, list[float]] = {name: [] for name in _PHASES}
    times: list[float] = []
    first = 0.0
    for i in range(reps + 1):
        root = fresh("cache")
        log = root.with_suffix(".log")
        t0 = time.perf_counter()
        CondaBuilder(EnvironmentCache(root)).prepare(env, log)
        seconds = time.perf_counter() - t0
        if i == 0:
            first = seconds
            continue
        times.append(seconds)
        text = log.read_text()
        for name, pattern in _PHASES.items():
            found = pattern.search(text)
            if found:
                phases[name].append(float(found.group(1)))
    builder = CondaBuilder(EnvironmentCache(root))
    hit = common.med(common.timings(50, lambda: builder.prepare(env, tmp / "conda-hit.log")))
    return first, times, phases, hit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="cold pip pairs (default 5)")
    parser.add_argument("--hit-reps", type=int, default=200, help="cache-hit prepares")
    parser.add_argument("--submit-reps", type=int, default=10, help="submit pairs")
    parser.add_argument("--conda-reps", type=int, default=5, help="conda builds")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="(a) with UV_OFFLINE=1 on both sides after the warm-up (no index revalidation)",
    )
    args = parser.parse_args()

    common.print_header(
        "envs: preparing environments (pip with uv, cache hits, conda with py-rattler)",
        f"wall clock; medians of {args.reps} (cold pip, A/B interleaved), {args.hit_reps} "
        f"(hits), {args.submit_reps} (submits, interleaved), {args.conda_reps} (conda)",
    )
    with common.temp_dir("runner-bench-envs-") as tmp:
        # One cache for (b): the daemon started by hit_submit inherits it.
        os.environ["RUNNER_ENV_CACHE"] = str(tmp / "shared-cache")
        os.environ["RUNNER_DAEMON_IDLE_S"] = "60"
        ta, tb, uv_version = cold_pip(tmp, args.reps, args.offline)
        hits = hit_prepare(tmp, args.hit_reps)
        sa, sb = hit_submit(tmp, args.submit_reps)
        c_first, c_times, c_phases, c_hit = conda_builds(tmp, args.conda_reps)

    ratio = common.med(ta) / common.med(tb)
    ok_cold = ratio <= GOAL_COLD
    ok_hit = common.med(hits) * 1000 < GOAL_HIT_MS
    print(
        f"uv: {uv_version}; packages: {', '.join(PACKAGES)}; uv's download cache warm"
        + ("; (a) with UV_OFFLINE=1" if args.offline else "")
    )
    print()
    print("(a) a cold pip environment")
    common.print_table(
        ["case", "median ms", "min ms", "max ms", "vs baseline", f"goal <= {GOAL_COLD}x"],
        [
            [
                "baseline: uv venv && uv pip install",
                common.ms(common.med(tb)),
                common.ms(min(tb)),
                common.ms(max(tb)),
                "1.00",
                "",
            ],
            [
                "VenvBuilder.prepare, empty cache",
                common.ms(common.med(ta)),
                common.ms(min(ta)),
                common.ms(max(ta)),
                f"{ratio:.2f}",
                common.verdict(ok_cold),
            ],
        ],
    )
    diff = [a - b for a, b in zip(sa, sb)]
    ok_submit = common.med(diff) * 1000 < GOAL_HIT_MS
    print("(b) a cache hit")
    common.print_table(
        ["case", "median ms", "min ms", "max ms", f"goal < {GOAL_HIT_MS:g} ms"],
        [
            [
                "builder_for(env).prepare(env, log), built env",
                f"{common.med(hits) * 1000:.2f}",
                f"{min(hits) * 1000:.2f}",
                f"{max(hits) * 1000:.2f}",
                common.verdict(ok_hit),
            ],
            [
                "submit + wait, cached pip env",
                common.ms(common.med(sa)),
                common.ms(min(sa)),
                common.ms(max(sa)),
                "",
            ],
            [
                "submit + wait, user-managed, same python",
                common.ms(common.med(sb)),
                common.ms(min(sb)),
                common.ms(max(sb)),
                "",
            ],
            [
                "difference (pairwise): the hit through a submit",
                common.ms(common.med(diff)),
                common.ms(min(diff)),
                common.ms(max(diff)),
                common.verdict(ok_submit),
            ],
        ],
    )
    print("(c) conda from the local channel (pyhello + hello-data + a python shim; no goal)")
    rows: list[list[object]] = [
        ["first build in this process (imports conda-lock)", f"{c_first:.3f}", "", ""],
        [
            f"CondaBuilder.prepare, empty cache (median of {len(c_times)})",
            f"{common.med(c_times):.3f}",
            f"{min(c_times):.3f}",
            f"{max(c_times):.3f}",
        ],
    ]
    for name, values in c_phases.items():
        rows.append(
            [f"  {name}", f"{common.med(values):.3f}", f"{min(values):.3f}", f"{max(values):.3f}"]
        )
    rows.append(["cache hit (median of 50)", f"{c_hit:.4f}", "", ""])
    common.print_table(["case", "median s", "min s", "max s"], rows)
    ok = ok_cold and ok_hit and ok_submit
    print(
        f"overall: {common.verdict(ok)} (cold pip <= {GOAL_COLD}x: {common.verdict(ok_cold)}; "
        f"cache hit < {GOAL_HIT_MS:g} ms: {common.verdict(ok_hit)}; through a submit: "
        f"{common.verdict(ok_submit)})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
