"""The keeper: the one process that supervises a local run's process tree from start to end.

Run as ``python -I -S keeper.py`` (standard library only, no import of runner: it runs
by path) it keeps the one run whose launch spec arrives on its stdin (a ``marshal``-ed
dict, written by the same interpreter; the pipe's end marks its end). The daemon starts
it as ``keeper.py factory`` instead (see ``factory()``), which forks keepers ahead of
need, so that a launch costs neither an interpreter start nor a cgroup migration. It
imports only builtin modules (no json, re or contextlib: they would double its start).
Given a spec it

1. claims the run's ``started`` file (``O_EXCL`` through a hard link): a run's script is
   started at most once, whatever daemons do; a second keeper for the run refuses;
2. becomes a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``, done at its own start):
   processes of the run that double-fork and ``setsid`` away are re-parented to it, not
   to init, so they stay in its tree;
3. where cgroup v2 can be used (a writable cgroup2 hierarchy with ``cgroup.kill``, and
   ``RUNNER_CGROUPS`` is not ``off``), puts the script in a cgroup of its own: nothing
   the run starts can leave it, and ``cgroup.kill`` ends it whole. The script is created
   inside it (``clone3`` with ``CLONE_INTO_CGROUP``, Linux 5.7+): moving a process into
   a cgroup afterwards makes the kernel wait for an RCU grace period, milliseconds of a
   small run's overhead. Where clone3 is refused (an old kernel, a seccomp filter) the
   script moves itself in before it execs;
4. starts the script (in the work folder, its output appended to the driver log) and
   reaps every process that ends in its tree. A distributed run's spec lists ``ranks``:
   the keeper starts the script once per rank (its variables added, its output in its
   own log, copied line by line into the driver log marked ``[rank N]``); the first rank
   to fail fails the run and the others get SIGTERM, then SIGKILL, as under torchrun;
5. on SIGTERM (cancel) sends SIGTERM to every process of the run, waits the grace
   period, then kills what is left; when the script ends by itself, what it left running
   gets SIGTERM and ``leftover_grace_s``;
6. writes the exit code (128 + N for a signal, as shells do) to the exit file once no
   process of the run is left, removes the cgroup, and exits with that code.

The daemon finds the keeper again after a restart by the pid in ``started``.

Why one module past ~600 lines (issue 13): the keeper is a program run by path in an
isolated interpreter (``-I -S``: no ``sys.path`` entry for its folder), compiled alone
into a cached .pyc keyed by this file's digest (``KeeperFactory.program`` in
targets/local.py). So every line the keeper process runs must be in this file, and a
split would need other modules found, hashed and imported at each keeper's start. The
host's side (targets.local, runner.lifecycle, the daemon) imports its helpers from here,
so both sides read ``started``, /proc and cgroups the same way.
"""

from __future__ import annotations

import gc
import marshal
import os
import sys
import time

try:  # the C module: `signal` imports enum, and typing with it (~6 ms)
    import _signal as signal  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - every CPython has it
    import signal

#: Exit code of a keeper that refused to start a run a second time.
ALREADY_STARTED = 75
_PR_SET_CHILD_SUBREAPER = 36
_CGROUP_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


# -- process facts (Linux /proc; psutil-compatible create times) --------------------------


#: What never changes for a process and its forks (see warm()): boot time, own cgroup
#: folder, libc entry points. Filled once in the factory, so a forked keeper finds it.
_MEMO: dict[str, object] = {}


def _boot_time() -> float:
    if "btime" not in _MEMO:
        _MEMO["btime"] = 0.0
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    _MEMO["btime"] = float(line.split()[1])
                    break
    return float(str(_MEMO["btime"]))


def start_ticks(pid: int, live: bool = False) -> int | None:
    """A process's start in clock ticks since boot (/proc/PID/stat field 22), or None
    when it is gone (with ``live``: also when it is a zombie, which has ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        if live and fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def create_time(pid: int) -> float | None:
    """A process's start as psutil computes it (boot time + start ticks), or None."""
    ticks = start_ticks(pid)
    return None if ticks is None else _boot_time() + ticks / os.sysconf("SC_CLK_TCK")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process (none without /proc)."""
    found: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in (b"Z", b"X"):
            found[int(name)] = int(fields[1])
    return found


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (not ``root`` itself)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def set_child_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants; False where impossible."""
    if not sys.platform.startswith("linux"):
        return False
    try:  # _ctypes directly: importing ctypes costs ~10 ms of the keeper's start
        import _ctypes

        prctl = _MEMO.get("prctl")
        if not isinstance(prctl, int):
            prctl = _MEMO["prctl"] = _ctypes.dlsym(_ctypes.dlopen(None), "prctl")  # type: ignore[arg-type]
        call = (_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return bool(_ctypes.call_function(prctl, call) == 0)
    except Exception:
        try:
            import ctypes

            return bool(ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
        except Exception:
            return False


# -- cgroup v2 ------------------------------------------------------------------------------


def cgroups_wanted(env: dict[str, str] | None = None) -> bool:
    """False when ``RUNNER_CGROUPS`` says off (``off``, ``0``, ``no``, ``false``)."""
    value = (env if env is not None else os.environ).get("RUNNER_CGROUPS", "")
    return value.strip().lower() not in ("off", "0", "no", "false")


def own_cgroup_dir() -> str | None:
    """The cgroup v2 folder this process is in, if a cgroup2 hierarchy is mounted."""
    if "cgroup_dir" not in _MEMO:
        _MEMO["cgroup_dir"] = _find_own_cgroup_dir()
    found = _MEMO["cgroup_dir"]
    return found if isinstance(found, str) else None


def _find_own_cgroup_dir() -> str | None:
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            path = next((ln[3:].strip() for ln in f if ln.startswith("0::")), None)
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            mounts = [ln.split() for ln in f]
    except OSError:
        return None
    if path is None:
        return None
    for fields in mounts:
        sep = fields.index("-") if "-" in fields else -1
        if sep < 0 or fields[sep + 1] != "cgroup2":
            continue
        root, point = fields[3], fields[4]
        if root == "/" or path == root or path.startswith(root.rstrip("/") + "/"):
            rel = path[len(root) :] if root != "/" else path
            return point.rstrip("/") + "/" + rel.lstrip("/") if rel.strip("/") else point
    return None


def make_run_cgroup(run_id: str) -> str | None:
    """Create the run's cgroup below this process's own; None when cgroups cannot be used."""
    parent = own_cgroup_dir()
    if parent is None:
        return None  # no cgroup v2 here
    path = os.path.join(parent, cgroup_name(run_id))
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    except OSError:
        return None  # not ours to write (no delegation): the subreaper alone contains the run
    if not os.path.exists(os.path.join(path, "cgroup.kill")):  # a kernel before 5.14
        remove_cgroup(path, 0.0)
        return None
    return path


def cgroup_name(run_id: str) -> str:
    """``runner-<run id>``, with what a folder name cannot hold replaced by '_'."""
    return "runner-" + "".join(c if c in _CGROUP_NAME_CHARS else "_" for c in run_id)[:200]


def _join(cgroup: str) -> bool:
    """Move this process into a cgroup; False if that is not allowed."""
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), "w", encoding="ascii") as f:
            f.write("0")
    except OSError:
        return False
    return True


_CLONE_INTO_CGROUP = 0x200000000
_SYS_CLONE3 = 435  # the same number on every architecture (the generic syscall table)
_CLONE_ARGS = (
    "flags",
    "pidfd",
    "child_tid",
    "parent_tid",
    "exit_signal",
    "stack",
    "stack_size",
    "tls",
    "set_tid",
    "set_tid_size",
    "cgroup",
)


def _clone3() -> tuple[type, object, object, int] | None:
    """(clone_args, libc's syscall, ctypes.byref, the struct's size), made once."""
    if "clone3" not in _MEMO:
        try:  # here, not at the top: ctypes costs ~10 ms of a start that needs no clone3
            import ctypes
        except ImportError:  # pragma: no cover - CPython has it
            return None
        fields = [(name, ctypes.c_uint64) for name in _CLONE_ARGS]
        args_type = type("clone_args", (ctypes.Structure,), {"_fields_": fields})
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        _MEMO["clone3"] = (args_type, libc.syscall, ctypes.byref, ctypes.sizeof(args_type))
    return _MEMO["clone3"]  # type: ignore[return-value]


def fork_into_cgroup(cgroup: str) -> int | None:
    """``fork()`` with the child created inside ``cgroup`` (clone3 with CLONE_INTO_CGROUP);
    None where the kernel refuses it (the caller then forks and moves the child)."""
    call = _clone3()
    if call is None:
        return None
    args_type, syscall, byref, size = call
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        args = args_type(flags=_CLONE_INTO_CGROUP, exit_signal=signal.SIGCHLD, cgroup=fd)
        # Like fork(): this single-threaded process goes on in both; the child only resets
        # signals, changes folder and execs (see Keeper._exec).
        pid = int(syscall(_SYS_CLONE3, byref(args), size))  # type: ignore[operator]
    finally:
        os.close(fd)
    return None if pid < 0 else pid


def remove_empty_cgroups() -> list[str]:
    """Remove empty ``runner-*`` cgroups beside this process's (keepers that were killed
    leave them); a cgroup with a process in it stays. Returns the names removed."""
    parent = own_cgroup_dir()
    removed: list[str] = []
    if parent is None:
        return removed
    try:
        names = [n for n in os.listdir(parent) if n.startswith("runner-")]
    except OSError:
        return removed
    for name in names:
        if remove_cgroup(os.path.join(parent, name), 0.0):
            removed.append(name)
    return removed


def cgroup_populated(path: str) -> bool:
    """Whether any process is in the cgroup or below it (one small read: cgroup.events)."""
    try:
        with open(os.path.join(path, "cgroup.events"), "rb") as f:
            return b"populated 1" in f.read()
    except OSError:
        return False


def cgroup_pids(path: str) -> set[int]:
    """The processes in a cgroup (and its children); empty once it is gone."""
    found: set[int] = set()
    for folder, _dirs, files in os.walk(path):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(folder, "cgroup.procs"), encoding="ascii") as f:
                    found.update(int(x) for x in f.read().split())
            except (OSError, ValueError):
                continue
    return found


def kill_cgroup(path: str) -> None:
    """SIGKILL every process of a cgroup at once (no fork can race it)."""
    try:
        with open(os.path.join(path, "cgroup.kill"), "w", encoding="ascii") as f:
            f.write("1")
    except OSError:
        for pid in cgroup_pids(path):
            _signal(pid, signal.SIGKILL)


def remove_cgroup(path: str, timeout_s: float = 2.0) -> bool:
    """Remove an emptied cgroup (children first); False if it still has processes."""
    try:
        os.rmdir(path)  # the usual case: empty, and no cgroups below it
        return True
    except FileNotFoundError:
        return True
    except OSError:
        pass
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            for folder, _dirs, _files in sorted(os.walk(path), key=lambda w: -len(w[0])):
                os.rmdir(folder)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return


# -- the keeper -----------------------------------------------------------------------------


class Keeper:
    """One run's supervision (see the module docstring); ``run()`` returns the exit code."""

    def __init__(self, spec: dict[str, object]) -> None:
        self.spec = spec
        self.me = os.getpid()
        self.child = 0
        self.code: int | None = None
        #: a distributed run: the rank whose failure failed the run
        self.failed_rank: int | None = None
        self.cgroup: str | None = None  #: the run's cgroup
        self.canceling = False
        self.kill_at: float | None = None
        #: set by main(): whether orphans of the run come back to this process
        self.subreaper: bool | None = None
        #: a distributed run's processes: pid -> rank (empty: one process, self.child)
        self.ranks: dict[int, int] = {}
        self.pumps: list[_Pump] = []

    def _say(self, text: str) -> None:
        try:
            os.write(2, f"runner: {text}\n".encode("utf-8", "replace"))
        except OSError:
            return

    def _log_to(self, path: str, text: str) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            self._say(text)
            return
        try:
            os.write(fd, f"runner: {text}\n".encode("utf-8", "replace"))
        finally:
            os.close(fd)

    def members(self) -> set[int]:
        """Every process of the run: the keeper's descendants and the cgroup's members.

        As a subreaper the keeper is an ancestor of every process of the run, so with no
        child left there is nothing below it: /proc is not read at all then.
        """
        pids = descendants(self.me) if self.subreaper is False or _has_children() else set()
        if self.cgroup is not None and cgroup_populated(self.cgroup):
            pids |= cgroup_pids(self.cgroup)
        pids.discard(self.me)
        return pids

    def signal_all(self, sig: int) -> None:
        if sig == signal.SIGKILL and self.cgroup is not None:
            kill_cgroup(self.cgroup)
        for pid in self.members():
            _signal(pid, sig)

    def on_term(self, signum: int, frame: object) -> None:
        """Cancel: TERM to every process of the run now, KILL after the grace period."""
        if self.canceling:
            return
        self.canceling = True
        grace = float(str(self.spec.get("grace_s") or 0))
        self.kill_at = time.monotonic() + grace
        self.signal_all(signal.SIGTERM)
        signal.signal(signal.SIGALRM, self.on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(grace, 0.001))

    def on_alarm(self, signum: int, frame: object) -> None:
        self.signal_all(signal.SIGKILL)

    def start(self) -> bool:
        """Claim the run, then start its script; False if it was started before."""
        spec = self.spec
        started = str(spec["started"])
        if spec.get("cgroup") and cgroups_wanted():
            self.cgroup = make_run_cgroup(str(spec["run_id"]))
        try:
            self._record(started, exclusive=True)  # the gate: a run starts at most once
        except FileExistsError:
            self._log_to(
                str(spec["driver_log"]),
                f"run {spec['run_id']} was started before (see {started}); not again",
            )
            if self.cgroup is not None:
                remove_cgroup(self.cgroup, 0.0)
            return False
        # 0660 less the daemon's umask: private, or the shared group's (runner.access).
        log = os.open(str(spec["driver_log"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o660)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_term)
        ranks = list(spec.get("ranks") or ())  # type: ignore[call-overload]
        if not ranks:
            self.child = self._fork(None)
        for rank in ranks:  # a distributed run: one process per rank (see wait_ranks)
            self.ranks[self._fork(rank)] = int(rank["rank"])
            self.pumps.append(_Pump(int(rank["rank"]), str(rank["log"])))
        if self.canceling:  # a cancel came while the script was being started
            self.signal_all(signal.SIGTERM)
        return True

    def _fork(self, rank: dict[str, object] | None) -> int:
        """Start the script (one rank of it); the child's pid."""
        pid = fork_into_cgroup(self.cgroup) if self.cgroup is not None else None
        moving = pid is None and self.cgroup is not None
        if pid is None:
            pid = os.fork()
        if pid == 0:  # the script's process
            self._exec(join=moving, rank=rank)
        return pid

    def _record(self, started: str, exclusive: bool) -> None:
        """Write the ``started`` file (pid, create time, cgroup); ``exclusive``: only if
        there is none yet (FileExistsError otherwise)."""
        tmp = f"{started}.{self.me}"
        cgroup = "null" if self.cgroup is None else _json_string(self.cgroup)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(
                f'{{"pid": {self.me}, "create_time": {create_time(self.me)!r}, '
                f'"cgroup": {cgroup}}}\n'
            )
        try:
            (os.link if exclusive else os.replace)(tmp, started)
        finally:
            if os.path.lexists(tmp):  # (os.link leaves it, os.replace moved it)
                os.unlink(tmp)

    def _exec(self, join: bool, rank: dict[str, object] | None = None) -> None:
        """In the forked child: (join the run's cgroup,) enter the work folder and exec the
        argv (a rank: with its variables, its output to its own log); never returns."""
        spec = self.spec
        argv = [str(a) for a in spec["argv"]]  # type: ignore[attr-defined]
        env = {str(k): str(v) for k, v in spec["env"].items()}  # type: ignore[attr-defined]
        try:
            if rank is not None:
                env.update({str(k): str(v) for k, v in rank["env"].items()})  # type: ignore[attr-defined]
                log = os.open(str(rank["log"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o660)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.close(log)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
                signal.signal(sig, signal.SIG_DFL)
            # Python ignores these; a script started by a shell would not.
            for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
                if hasattr(signal, name):
                    signal.signal(getattr(signal, name), signal.SIG_DFL)
            if join and self.cgroup is not None and not _join(self.cgroup):
                self._say(f"could not join cgroup {self.cgroup}; only the subreaper keeps the run")
            if spec.get("umask") is not None:
                os.umask(int(str(spec["umask"])))  # the user's, not the daemon's private one
            try:
                os.chdir(str(spec["workdir"]))
            except OSError as exc:
                self._say(f"cannot enter the work folder: {exc}")
                os._exit(127)
            try:
                os.execvpe(argv[0], argv, env)  # noqa: S606 - an argv, as given
            except PermissionError as exc:
                self._say(f"cannot run {argv[0]!r}: {exc}")
                os._exit(126)
            except OSError as exc:
                self._say(f"cannot run {argv[0]!r}: {exc}")
                os._exit(127)
        finally:
            os._exit(127)

    def wait(self) -> int:
        """Reap until the script ends, then until no process of the run is left."""
        if self.ranks:
            self.wait_ranks()
        while self.code is None:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == self.child:
                self.code = _exit_code(status)
        if self.code is None:
            self.code = 127
        if not self.canceling:
            left = self.members()
            if not left:
                return self.code  # the usual end: nothing else to wait for
            self._say(
                f"the script left {len(left)} process(es) running; stopping them "
                f"(SIGTERM, then SIGKILL after {self.spec.get('leftover_grace_s')} s)"
            )
            self.kill_at = time.monotonic() + float(str(self.spec.get("leftover_grace_s") or 0))
            self.signal_all(signal.SIGTERM)
        delay = 0.001
        while True:
            self._reap()
            if not self.members():
                break
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                self.signal_all(signal.SIGKILL)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        return self.code

    def _reap(self) -> None:
        _reap_all(0, None)
        self.pump()

    def pump(self) -> None:
        """Copy what the ranks wrote to their logs into the driver log, line by line."""
        for p in self.pumps:
            p.copy(1)

    def wait_ranks(self) -> None:
        """A distributed run: reap its ranks as they end (copying their output to the
        driver log). As torchrun does, the first rank to fail fails the run: the others
        get SIGTERM, then SIGKILL after the grace period. ``self.code`` is 0 when every
        rank ended with 0, else the code of the first rank that failed."""
        left = dict(self.ranks)
        delay = 0.005
        while left:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                self.pump()
                if self.kill_at is not None and time.monotonic() >= self.kill_at:
                    self.signal_all(signal.SIGKILL)
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            delay = 0.005
            rank = left.pop(pid, None)
            if rank is None:
                continue  # an orphan of the run, re-parented here
            code = _exit_code(status)
            if code != 0 and self.code is None:
                self.code = code
                self.failed_rank = rank
                if not self.canceling and left:
                    grace = float(str(self.spec.get("grace_s") or 0))
                    self._say(
                        f"rank {rank} exited with code {code}; stopping the other "
                        f"{len(left)} rank(s) (SIGTERM, then SIGKILL after {grace:g} s)"
                    )
                    self.kill_at = time.monotonic() + grace
                    self.signal_all(signal.SIGTERM)
        self.pump()
        for p in self.pumps:
            p.copy(1, final=True)
        if self.code is None:
            self.code = 0 if not left else 127

    def finish(self, code: int) -> None:
        """Write the exit code where the daemon reads it, and remove the cgroup."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        exit_file = str(self.spec["exit_file"])
        if self.failed_rank is not None:  # before the exit code: it is there when read
            with open(failed_rank_file(exit_file), "w", encoding="ascii") as f:
                f.write(f"{self.failed_rank}\n")
        tmp = f"{exit_file}.{self.me}"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{code}\n")
        os.replace(tmp, exit_file)
        if self.cgroup is not None and not remove_cgroup(self.cgroup):
            self._say(f"could not remove cgroup {self.cgroup}")


def failed_rank_file(exit_file: str) -> str:
    """Where the keeper of a distributed run names the rank that failed it (beside the
    exit-code file)."""
    return os.path.join(os.path.dirname(exit_file), "failed_rank")


class _Pump:
    """Copies what one rank appends to its log into the driver log, each line marked
    ``[rank N]`` (its own log keeps it unmarked)."""

    def __init__(self, rank: int, path: str) -> None:
        self.prefix = f"[rank {rank}] ".encode()
        self.path = path
        self.offset = 0
        self.partial = b""

    def copy(self, out_fd: int, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(1 << 20)
        except OSError:
            return
        self.offset += len(data)
        data = self.partial + data
        end = len(data) if final else data.rfind(b"\n") + 1
        self.partial = data[end:]
        if final and data and not data.endswith(b"\n"):
            data += b"\n"
            end += 1
        lines = data[:end].splitlines(keepends=True)
        if lines:
            try:
                os.write(out_fd, b"".join(self.prefix + ln for ln in lines))
            except OSError:
                return


def _json_string(text: str) -> str:
    """``text`` as a JSON string (json itself is not imported: see the module docstring)."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _has_children() -> bool:
    """Whether this process has a child (running, or ended and not yet reaped)."""
    if not hasattr(os, "waitid"):
        return True
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 127


def keep(spec_fd: int) -> int:
    """Be one run's keeper: get ready, wait for the spec on ``spec_fd`` (none: exit
    quietly), then keep that run; the exit code."""
    gc.disable()  # short-lived and small: a collection would only copy shared pages
    subreaper = set_child_subreaper()
    data = _read_all(spec_fd)
    if spec_fd != 0:
        os.close(spec_fd)
    if not data:  # an idle keeper that was not needed
        return 0
    keeper = Keeper(marshal.loads(data))  # noqa: S302 - from our daemon, through a pipe
    keeper.subreaper = subreaper
    if not keeper.start():
        return ALREADY_STARTED
    code = keeper.wait()
    keeper.finish(code)
    return min(code, 255)


# -- the factory ----------------------------------------------------------------------------


def factory() -> int:
    """Fork keepers for a daemon: one idle keeper is always ready.

    The daemon writes each launch spec as a frame (4-byte big-endian length, then the
    marshal-ed spec) to the factory's stdin; the factory hands it to the idle keeper,
    answers with that keeper's pid and create time (one line on stdout), and forks the next idle keeper.
    A fork of this small, already started interpreter costs ~1 ms of CPU where starting
    a new one costs ~10 ms: on two cores that is the difference between a run's overhead
    and a queue of runs' throughput. The factory reaps the keepers it forked (they are
    its children); the daemon waits on them by pid. It exits when its stdin closes.
    """
    signal.signal(signal.SIGCHLD, _reap_all)
    warm()
    spare_pid, spare_w = _fork_keeper()
    spare_created = create_time(spare_pid)
    while True:
        frame = _read_frame(0)
        if frame is None:
            break
        os.write(spare_w, frame)
        os.close(spare_w)
        # Its identity as psutil sees it, read while it is certainly not reaped yet.
        os.write(1, f"{spare_pid} {spare_created!r}\n".encode())
        spare_pid, spare_w = _fork_keeper()
        spare_created = create_time(spare_pid)
    os.close(spare_w)  # the idle keeper reads nothing and leaves
    return 0


def warm() -> None:
    """Do once, before forking keepers, what each keeper would do again (find the boot
    time, the cgroup folder, libc's prctl and the clone3 call), and keep the garbage
    collector from touching (so copying) every page a forked keeper shares with this."""
    _boot_time()
    own_cgroup_dir()
    set_child_subreaper()  # (the factory too: keepers whose runs outlive it come back to it)
    _clone3()
    gc.disable()
    gc.freeze()


def _fork_keeper() -> tuple[int, int]:
    """Fork an idle keeper in a session of its own; (its pid, the pipe to send its spec)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 127
        try:
            os.close(w)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)  # the daemon's pipes stay the factory's
            os.dup2(devnull, 1)
            os.close(devnull)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.setsid()
            code = keep(r)
        finally:
            os._exit(code)
    os.close(r)
    return pid, w


def _read_frame(fd: int) -> bytes | None:
    """One length-prefixed frame, or None at the end of the stream."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    return _read_exactly(fd, int.from_bytes(head, "big"))


def _read_exactly(fd: int, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _reap_all(signum: int, frame: object) -> None:
    """Reap every child that has ended (a SIGCHLD handler, and the keeper's cleanup)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    """``keeper.py``: keep one run (its spec on stdin); ``keeper.py factory``: fork keepers."""
    if argv[1:] == ["factory"]:
        return factory()
    return keep(0)


if __name__ == "__main__":
    os._exit(main(sys.argv))  # nothing to flush (all output is os.write): skip teardown
