"""A tiny LOCAL conda channel and two wheels, made by hand for offline conda tests.

Standard library only (adapted from ``shared/recipes/make_conda_channel.py``): the test process
never imports py-rattler, whose finalization can crash a short-lived interpreter.

The channel (``file://`` URL, repodata.json written here, no indexer needed)::

    <platform>/python-X.Y.Z-0_shim   a stand-in "python": bin/python is a shell script with the
                                      conda prefix placeholder; it execs THIS machine's Python with
                                      the prefix's lib/pythonX.Y/site-packages on PYTHONPATH
    noarch/hello-data-0.1-0, 0.2-0    noarch: generic, share/hello-data/greeting.txt
    noarch/pyhello-1.0-py_0           noarch: python, module pyhello + entry point ``pyhello``;
                                      depends python >=3.8, hello-data
    noarch/pyhello-1.1-py_0           the same, depends hello-data >=0.2

The wheels (for a pip section with ``--no-index --find-links``): ``pipmain 1.0`` requires
``pipdep>=0.1``; ``pipdep 0.2``.
"""

from __future__ import annotations

import base64
import bz2
import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

#: conda's classic prefix placeholder, replaced by the prefix at install time.
PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
_TIMESTAMP_MS = 1_700_000_000_000  # fixed: the same channel bytes every time


@dataclass(frozen=True)
class LocalChannel:
    """A built channel: where it is, and what it holds."""

    path: Path
    url: str
    platform: str
    python_version: str  #: "X.Y.Z" of the shim python (the Python running the tests)
    packages: tuple[str, ...]  #: "subdir/file name" of every package


def _package(
    out: Path,
    subdir: str,
    name: str,
    version: str,
    build: str,
    depends: list[str],
    files: dict[str, tuple[bytes, int]],
    *,
    noarch: str | None = None,
    link: dict[str, object] | None = None,
    placeholders: tuple[str, ...] = (),
    tag: str = "",
) -> tuple[str, str, dict[str, object]]:
    """One ``.tar.bz2`` package; returns (subdir, file name, its repodata record)."""
    index: dict[str, object] = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": depends,
        "license": "MIT",
        "subdir": subdir,
        "timestamp": _TIMESTAMP_MS,
    }
    if noarch:
        index["noarch"] = noarch
    paths = []
    for rel, (data, _mode) in sorted(files.items()):
        entry: dict[str, object] = {
            "_path": rel,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        if rel in placeholders:
            entry.update(prefix_placeholder=PLACEHOLDER, file_mode="text")
        paths.append(entry)
    meta = {
        "info/index.json": json.dumps(index, indent=2).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2).encode(),
        "info/files": ("\n".join(sorted(files)) + "\n").encode(),
    }
    if placeholders:
        meta["info/has_prefix"] = "".join(
            f"{PLACEHOLDER} text {p}\n" for p in placeholders
        ).encode()
    if link:
        meta["info/link.json"] = json.dumps(link, indent=2).encode()
    if tag:
        meta["info/runner-test-tag"] = tag.encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        members = [(p, data, 0o644) for p, data in meta.items()]
        members += [(p, data, mode) for p, (data, mode) in sorted(files.items())]
        for rel, data, mode in members:
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mtime = _TIMESTAMP_MS // 1000
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    blob = bz2.compress(raw.getvalue())
    (out / subdir).mkdir(parents=True, exist_ok=True)
    file_name = f"{name}-{version}-{build}.tar.bz2"
    (out / subdir / file_name).write_bytes(blob)
    record = dict(
        index,
        md5=hashlib.md5(blob, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
    )
    return subdir, file_name, record


def build_channel(
    out: Path, platform: str, python: tuple[str, str] | None = None, tag: str = ""
) -> LocalChannel:
    """Build the channel in ``out`` (created) for conda platform ``platform`` (``linux-64``).

    ``python``: (path, "X.Y.Z") of the interpreter the shim python runs, for a prefix that
    another user installs (an SSH host); default the Python running the tests. ``tag``: a
    file in every package, for archives no earlier test session made (a host keeps the
    archives it was given, by content).
    """
    out.mkdir(parents=True, exist_ok=True)
    if python is None:
        # the base interpreter, not a venv's
        python = (os.path.realpath(sys.executable), ".".join(map(str, sys.version_info[:3])))
    interpreter, version = python
    major, minor = version.split(".")[:2]
    site = f"lib/python{major}.{minor}/site-packages"
    shim = (
        "#!/bin/sh\n# the conda prefix replaces the placeholder at install time\n"
        f'PYTHONPATH="{PLACEHOLDER}/{site}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{interpreter}" "$@"\n'
    ).encode()
    # noarch: python entry points get the shebang $PREFIX/bin/pythonX.Y: provide that name too
    shim_files = ("bin/python", "bin/python3", f"bin/python{major}.{minor}")
    records = [
        _package(
            out,
            platform,
            "python",
            version,
            "0_shim",
            [],
            {f: (shim, 0o755) for f in shim_files},
            placeholders=shim_files,
            tag=tag,
        )
    ]
    for data_version in ("0.1", "0.2"):
        records.append(
            _package(
                out,
                "noarch",
                "hello-data",
                data_version,
                "0",
                [],
                {
                    "share/hello-data/greeting.txt": (
                        f"hello from a local conda channel (data {data_version})\n".encode(),
                        0o644,
                    )
                },
                noarch="generic",
                tag=tag,
            )
        )
    for pkg_version, data_dep in (("1.0", "hello-data"), ("1.1", "hello-data >=0.2")):
        module = (
            f"import os\n__version__ = '{pkg_version}'\n"
            "def greeting():\n"
            "    prefix = os.path.abspath(os.path.join(os.path.dirname(__file__), *['..'] * 4))\n"
            "    p = os.path.join(prefix, 'share/hello-data/greeting.txt')\n"
            "    return open(p).read().strip() if os.path.exists(p) else 'no data'\n"
            "def main():\n    print('pyhello', __version__, '|', greeting())\n"
        ).encode()
        records.append(
            _package(
                out,
                "noarch",
                "pyhello",
                pkg_version,
                "py_0",
                ["python >=3.8", data_dep],
                {"site-packages/pyhello/__init__.py": (module, 0o644)},
                noarch="python",
                link={
                    "noarch": {"type": "python", "entry_points": ["pyhello = pyhello:main"]},
                    "package_metadata_version": 1,
                },
                tag=tag,
            )
        )
    for subdir in ("noarch", platform):
        (out / subdir).mkdir(parents=True, exist_ok=True)
        repodata = {
            "info": {"subdir": subdir},
            "packages": {fn: rec for sd, fn, rec in records if sd == subdir},
            "packages.conda": {},
            "removed": [],
            "repodata_version": 1,
        }
        (out / subdir / "repodata.json").write_text(json.dumps(repodata, indent=1))
    return LocalChannel(
        path=out,
        url=out.resolve().as_uri(),
        platform=platform,
        python_version=version,
        packages=tuple(f"{sd}/{fn}" for sd, fn, _ in records),
    )


def build_wheel(out: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel ``name-version-py3-none-any.whl`` in ``out``; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"__version__ = '{version}'\n".encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: runner-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = ""
    for rel, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{rel},sha256={digest},{len(data)}\n"
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    path = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for rel, data in files.items():
            info = zipfile.ZipInfo(rel, date_time=(2024, 1, 1, 0, 0, 0))
            archive.writestr(info, data)
    return path
