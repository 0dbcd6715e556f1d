"""A training script whose forked workers log to the run, as data-parallel code does.

Every worker calls ``Run.get_context().log("w", value)`` five times with distinct values:

- a ``multiprocessing`` Pool of 4 ("fork" start method) maps 8 tasks:
  ``1000 + 10 * task + k``, closed and joined the documented way (40 values);
- two ``multiprocessing.Process`` objects (fork): ``2000 + 10 * i + k`` (10 values);
- one bare ``os.fork()`` child: ``3000 + k``, then ``run.flush()`` and ``os._exit(0)``, as
  code that leaves with ``os._exit`` must (5 values).

The parent logs ``parent`` = 1. Exit 1 if any worker failed.
"""

import multiprocessing
import os
import sys

import lc_common

from runner import Run

VALUES_PER_WORKER = 5


def pool_task(task):
    run = Run.get_context()
    for k in range(VALUES_PER_WORKER):
        run.log("w", 1000 + 10 * task + k)
    return os.getpid()


def process_worker(i):
    run = Run.get_context()
    for k in range(VALUES_PER_WORKER):
        run.log("w", 2000 + 10 * i + k)


def main():
    lc_common.ledger()
    run = Run.get_context()
    run.log("parent", 1)
    ctx = multiprocessing.get_context("fork")

    pool = ctx.Pool(4)
    pids = pool.map(pool_task, range(8))
    pool.close()
    pool.join()
    print(f"pool workers: {sorted(set(pids))}", flush=True)

    procs = [ctx.Process(target=process_worker, args=(i,)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]

    child = os.fork()
    if child == 0:
        code = 0
        try:
            for k in range(VALUES_PER_WORKER):
                Run.get_context().log("w", 3000 + k)
            Run.get_context().flush()
        except BaseException as exc:
            sys.stderr.write(f"fork child: {exc!r}\n")
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        failed.append(status)
    if failed:
        sys.stderr.write(f"workers failed: {failed}\n")
        sys.exit(1)
    print("all workers done", flush=True)


if __name__ == "__main__":
    main()
