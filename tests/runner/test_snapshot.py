"""runner.snapshot: content-addressed snapshots, ignore files, symlinks, the stat cache, git.

Real files under tmp_path, real ``git`` repositories. The ignore-rule matcher is also
checked against git itself (``git ls-files --others --exclude-standard``) on one tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from runner import snapshot as snapmod
from runner.artifacts import BlobStore
from runner.errors import ConfigError, NotFoundError, RunnerWarning, StoreError
from runner.snapshot import (
    Snapshot,
    SnapshotEntry,
    git_properties,
    load_snapshot,
    materialize,
    take_snapshot,
    to_zip,
)

HAS_GIT = shutil.which("git") is not None
needs_git = pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
OLD_NS = 1_600_000_000 * 10**9  # a 2020 mtime: well outside the racy window of the cache


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


def put(root: Path, rel: str, data: bytes | str = b"x", *, executable: bool = False) -> Path:
    """Write a file (creating folders); return its path."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if executable:
        path.chmod(0o755)
    return path


def names(snap: Snapshot) -> set[str]:
    return {e.path for e in snap.entries}


def kept(root: Path, files: list[str], blobs: BlobStore) -> set[str]:
    """Create empty-ish files at ``files`` under root, snapshot, and return what is kept."""
    for rel in files:
        put(root, rel, rel)
    return names(take_snapshot(root, blobs))


def blob_files(blobs: BlobStore) -> set[Path]:
    if not blobs.root.exists():
        return set()
    return {p for p in blobs.root.rglob("*") if p.is_file()}


def age(root: Path) -> None:
    """Give every file under root an old mtime, so the stat cache may keep them."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, ns=(OLD_NS, OLD_NS))


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """No global or system git config (excludesFile, init.defaultBranch, ...)."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)


# --------------------------------------------------------------------------- basics


def test_folder_snapshot_lists_files_sorted_with_digests_and_sizes(
    src: Path, blobs: BlobStore
) -> None:
    put(src, "train.py", "print('hi')\n")
    put(src, "pkg/model.py", "x = 1\n")
    put(src, "pkg/deep/data.bin", bytes(range(256)) * 10)
    put(src, "run.sh", "#!/bin/sh\n", executable=True)

    snap = take_snapshot(src, blobs)

    assert [e.path for e in snap.entries] == sorted(names(snap))
    assert names(snap) == {"train.py", "pkg/model.py", "pkg/deep/data.bin", "run.sh"}
    by_path = {e.path: e for e in snap.entries}
    data = (src / "pkg/deep/data.bin").read_bytes()
    assert by_path["pkg/deep/data.bin"] == SnapshotEntry(
        "pkg/deep/data.bin", hashlib.sha256(data).hexdigest(), 2560, False
    )
    assert by_path["run.sh"].executable
    assert not by_path["train.py"].executable
    assert snap.file_count == 4
    assert snap.total_bytes == sum(e.size for e in snap.entries) == 12 + 6 + 2560 + 10
    for entry in snap.entries:
        assert blobs.read_bytes(entry.digest) == (src / entry.path).read_bytes()
    # The id is the SHA-256 of the manifest, which is stored under it.
    assert hashlib.sha256(blobs.read_bytes(snap.id)).hexdigest() == snap.id


def test_same_folder_twice_gives_same_id_and_stores_nothing_new(
    src: Path, blobs: BlobStore
) -> None:
    put(src, "a.py", "a")
    put(src, "b/c.py", "c" * 5000)
    first = take_snapshot(src, blobs)
    stored = {p: p.stat().st_mtime_ns for p in blob_files(blobs)}

    second = take_snapshot(src, blobs)

    assert second == first
    assert {p: p.stat().st_mtime_ns for p in blob_files(blobs)} == stored


def test_identical_content_elsewhere_gives_same_id(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    put(src, "a.py", "a")
    put(src, "b/c.py", "c")
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    assert take_snapshot(copy, blobs).id == take_snapshot(src, blobs).id


def test_changed_content_or_mode_or_name_gives_new_id(src: Path, blobs: BlobStore) -> None:
    path = put(src, "a.py", "one")
    ids = {take_snapshot(src, blobs).id}
    path.write_text("two")
    ids.add(take_snapshot(src, blobs).id)
    path.chmod(0o755)
    ids.add(take_snapshot(src, blobs).id)
    path.rename(src / "b.py")
    ids.add(take_snapshot(src, blobs).id)
    assert len(ids) == 4


def test_duplicate_content_is_stored_once(src: Path, blobs: BlobStore) -> None:
    for i in range(5):
        put(src, f"dir{i}/same.txt", "same content")
    snap = take_snapshot(src, blobs)
    assert len({e.digest for e in snap.entries}) == 1
    assert len(blob_files(blobs)) == 2  # the content and the manifest


def test_empty_folder_gives_an_empty_snapshot(src: Path, blobs: BlobStore) -> None:
    (src / "empty" / "deeper").mkdir(parents=True)
    snap = take_snapshot(src, blobs)
    assert snap.entries == ()
    assert load_snapshot(blobs, snap.id) == snap


def test_single_file_snapshot_holds_it_under_its_base_name(src: Path, blobs: BlobStore) -> None:
    script = put(src, "sub/train.py", "print(1)\n", executable=True)
    put(src, "sub/other.py", "ignored: only the named file is taken")

    snap = take_snapshot(script, blobs)

    assert snap.entries == (
        SnapshotEntry("train.py", hashlib.sha256(b"print(1)\n").hexdigest(), 9, True),
    )
    # A folder holding just that file has the same content, hence the same id.
    alone = src / "alone"
    put(alone, "train.py", "print(1)\n", executable=True)
    assert take_snapshot(alone, blobs).id == snap.id


def test_str_source_is_accepted(src: Path, blobs: BlobStore) -> None:
    put(src, "a.py")
    assert take_snapshot(str(src), blobs) == take_snapshot(src, blobs)


def test_missing_source_is_a_config_error(tmp_path: Path, blobs: BlobStore) -> None:
    with pytest.raises(ConfigError, match=r"does not exist; pass an existing folder or file"):
        take_snapshot(tmp_path / "nope", blobs)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no fifos on this platform")
def test_source_that_is_a_fifo_is_a_config_error(tmp_path: Path, blobs: BlobStore) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"is not a folder or a regular file; pass a folder"):
        take_snapshot(fifo, blobs)


def test_git_folder_and_git_file_are_always_left_out(src: Path, blobs: BlobStore) -> None:
    put(src, ".git/config", "[core]")
    put(src, ".git/objects/ab/cdef", "blob")
    put(src, "vendor/lib/.git", "gitdir: ../../.git/modules/lib")  # a submodule's .git file
    put(src, "vendor/lib/code.py")
    put(src, "x.git", "not a .git entry")
    assert names(take_snapshot(src, blobs)) == {"vendor/lib/code.py", "x.git"}


def test_store_and_cache_inside_the_source_are_left_out(src: Path) -> None:
    """A workspace inside the project must not feed its own blobs back into snapshots."""
    put(src, "train.py", "print(1)")
    blobs = BlobStore(src / "ws" / "blobs")
    cache = src / "ws" / "snapshot-cache.json"
    first = take_snapshot(src, blobs, cache_path=cache)
    assert blob_files(blobs)
    assert cache.is_file()
    second = take_snapshot(src, blobs, cache_path=cache)
    assert second == first
    assert names(second) == {"train.py"}


# --------------------------------------------------------------------------- ignore rules

IGNORE_CASES = [
    pytest.param(
        "# a comment\n\n   \n*.log\n",
        ["a.log", "dir/b.log", "# a comment", "keep.txt"],
        {"# a comment", "keep.txt"},
        id="comments-blank-lines",
    ),
    pytest.param(
        "\\#hash.txt\n",
        ["#hash.txt", "hash.txt"],
        {"hash.txt"},
        id="escaped-hash-is-literal",
    ),
    pytest.param(
        "*.log\n!keep.log\n",
        ["a.log", "keep.log", "sub/keep.log", "sub/x.log"],
        {"keep.log", "sub/keep.log"},
        id="negation",
    ),
    pytest.param(
        "!keep.log\n*.log\n",
        ["a.log", "keep.log"],
        set(),
        id="last-match-wins",
    ),
    pytest.param(
        "\\!bang.txt\n",
        ["!bang.txt", "bang.txt"],
        {"bang.txt"},
        id="escaped-bang-is-literal",
    ),
    pytest.param(
        "build/\n",
        ["build/out.o", "src/build/deep.o", "notes/build", "buildx/y"],
        {"notes/build", "buildx/y"},
        id="trailing-slash-directories-only",
    ),
    pytest.param(
        "/top.txt\n",
        ["top.txt", "sub/top.txt"],
        {"sub/top.txt"},
        id="leading-slash-anchors",
    ),
    pytest.param(
        "docs/*.md\n",
        ["docs/a.md", "docs/sub/b.md", "other/docs/c.md", "a.md"],
        {"docs/sub/b.md", "other/docs/c.md", "a.md"},
        id="middle-slash-anchors-and-star-stops-at-slash",
    ),
    pytest.param(
        "file?.txt\n",
        ["file1.txt", "fileA.txt", "file10.txt", "file.txt"],
        {"file10.txt", "file.txt"},
        id="question-mark",
    ),
    pytest.param(
        "*\n!*/\n!*.py\n",
        ["a.py", "b.txt", "sub/c.py", "sub/d.md"],
        {"a.py", "sub/c.py"},
        id="allow-list-idiom",
    ),
    pytest.param(
        "**/cache\n",
        ["cache/a", "x/cache/b", "x/y/cache", "cachex/c"],
        {"cachex/c"},
        id="leading-double-star",
    ),
    pytest.param(
        "out/**\n!out/keep.txt\n",
        ["out/a.txt", "out/keep.txt", "out/sub/b.txt", "outer.txt"],
        {"out/keep.txt", "outer.txt"},
        id="trailing-double-star",
    ),
    pytest.param(
        "a/**/z.txt\n",
        ["a/z.txt", "a/b/z.txt", "a/b/c/z.txt", "x/a/z.txt", "a/z.txt.bak"],
        {"x/a/z.txt", "a/z.txt.bak"},
        id="middle-double-star",
    ),
    pytest.param(
        "a**b\n",
        ["ab", "axxb", "a/b"],
        {"a/b"},
        id="double-star-inside-a-name-is-a-star",
    ),
    pytest.param(
        "data[0-9].csv\n[abc].txt\n",
        ["data1.csv", "datax.csv", "a.txt", "d.txt"],
        {"datax.csv", "d.txt"},
        id="character-class-and-range",
    ),
    pytest.param(
        "[!x]y.bin\n[^q]z.bin\n",
        ["ay.bin", "xy.bin", "az.bin", "qz.bin"],
        {"xy.bin", "qz.bin"},
        id="negated-class",
    ),
    pytest.param(
        "[[:digit:]]*.up\n[[:upper:]]*.cap\n",
        ["1a.up", "a1.up", "Ab.cap", "ab.cap"],
        {"a1.up", "ab.cap"},
        id="posix-classes",
    ),
    pytest.param(
        "[]]x\n",
        ["]x", "ax"],
        {"ax"},
        id="bracket-first-in-class",
    ),
    pytest.param(
        "[[:nope:]]x\n[[:alpha:]]y\n",
        ["ax", "nx", "ay", "1y"],
        {"ax", "nx", "1y"},
        id="unknown-posix-class-matches-nothing",
    ),
    pytest.param(
        "[ab\n",
        ["[ab", "a"],
        {"a"},
        id="unclosed-bracket-is-literal",
    ),
    pytest.param(
        "trail.txt   \nsp\\ \n",
        ["trail.txt", "sp ", "sp"],
        {"sp"},
        id="trailing-spaces-unless-escaped",
    ),
    pytest.param(
        "crlf.txt\r\nother.txt\r\n",
        ["crlf.txt", "other.txt", "kept.txt"],
        {"kept.txt"},
        id="crlf-line-endings",
    ),
    pytest.param(
        "\ufeffbom.txt\n",
        ["bom.txt", "kept.txt"],
        {"kept.txt"},
        id="utf8-bom",
    ),
    pytest.param(
        "logs\n!logs/keep.txt\n",
        ["logs/a.txt", "logs/keep.txt"],
        set(),
        id="no-re-include-below-an-excluded-folder",
    ),
    pytest.param(
        "bad\\\n*.tmp\n",
        ["bad\\", "bad", "x.tmp"],
        {"bad\\", "bad"},
        id="trailing-backslash-never-matches",
    ),
    pytest.param(
        "*.PY\n",
        ["a.py", "b.PY"],
        {"a.py"},
        id="case-sensitive",
    ),
]


@pytest.mark.parametrize(("rules", "files", "expected"), IGNORE_CASES)
def test_gitignore_rules(
    src: Path, blobs: BlobStore, rules: str, files: list[str], expected: set[str]
) -> None:
    put(src, ".gitignore", rules)
    assert kept(src, files, blobs) - {".gitignore"} == expected


def test_amlignore_wins_over_gitignore(src: Path, blobs: BlobStore) -> None:
    put(src, ".gitignore", "data/\n")
    put(src, ".amlignore", "*.log\n")
    got = kept(src, ["data/train.csv", "run.log", "train.py"], blobs)
    assert got == {".gitignore", ".amlignore", "data/train.csv", "train.py"}


def test_under_an_amlignore_nested_gitignores_are_not_read(src: Path, blobs: BlobStore) -> None:
    put(src, ".amlignore", "*.tmp\n")
    put(src, "data/.gitignore", "*\n")  # keeps data out of git, not out of the run
    got = kept(src, ["data/a.csv", "x.tmp", "data/y.tmp"], blobs)
    assert got == {".amlignore", "data/.gitignore", "data/a.csv"}


def test_nested_ignore_files_apply_to_their_subtree(src: Path, blobs: BlobStore) -> None:
    put(src, ".gitignore", "*.log\n/anchored.txt\n")
    put(src, "sub/.gitignore", "!*.log\nlocal.txt\n/anchored.txt\n")
    put(src, "sub/deeper/.amlignore", "secret/\n")
    files = [
        "a.log",
        "sub/b.log",  # re-included by the deeper file
        "sub/deeper/c.log",
        "local.txt",  # sub's rule does not reach up
        "sub/local.txt",
        "sub/deeper/local.txt",
        "anchored.txt",
        "sub/anchored.txt",  # anchored to sub/
        "sub/deeper/anchored.txt",
        "sub/deeper/secret/key",
        "other/secret/key",  # the .amlignore in sub/deeper does not reach here
    ]
    got = kept(src, files, blobs) - {".gitignore", "sub/.gitignore", "sub/deeper/.amlignore"}
    assert got == {
        "sub/b.log",
        "sub/deeper/c.log",
        "local.txt",
        "sub/deeper/anchored.txt",
        "other/secret/key",
    }


def test_ignored_ignore_file_still_applies(src: Path, blobs: BlobStore) -> None:
    put(src, ".amlignore", ".amlignore\n*.bak\n")
    assert kept(src, ["a.bak", "a.py"], blobs) == {"a.py"}


ORACLE_GITIGNORE = """\
# the git oracle
*.log
!keep.log
/rootonly.txt
build/
docs/*.md
!docs/README.md
**/cache
a/**/z.txt
out/**
!out/keep.txt
data[0-9].csv
file?.txt
[!x]y.bin
\\#hash.txt
\\!bang.txt
trailing.txt{SPACES}
tsp\\{SPACE}
foo/bar/
deep/*/x.txt
[[:upper:]]*.up
*.tmp
!important.tmp
nested/**/
[a-\\]]q
[]-]r
[!/]s
t[/]u
[[:nope:]]x
[z-a]w
""".format(SPACES="   ", SPACE=" ")  # trailing spaces, kept out of the source
ORACLE_SUB_GITIGNORE = "!*.log\nlocal.txt\n/anch.txt\n*.md\n!README.md\n"
ORACLE_FILES = [
    "a.log", "keep.log", "sub/x.log", "sub/keep.log", "rootonly.txt", "sub/rootonly.txt",
    "build/o.o", "src/build/o.o", "notes/build", "docs/a.md", "docs/README.md", "docs/s/b.md",
    "cache/1", "x/cache/2", "x/y/cache", "cachex/3", "a/z.txt", "a/b/z.txt", "a/b/c/z.txt",
    "x/a/z.txt", "out/1.txt", "out/keep.txt", "out/s/2.txt", "outer.txt", "data1.csv",
    "datax.csv", "file1.txt", "file10.txt", "ay.bin", "xy.bin", "#hash.txt", "hash.txt",
    "!bang.txt", "bang.txt", "trailing.txt", "tsp ", "tsp", "foo/bar/1", "x/foo/bar/2",
    "foo/barx", "deep/1/x.txt", "deep/1/2/x.txt", "Up.up", "up.up", "x.tmp",
    "important.tmp", "nested/f", "nested/d/f", "sub/local.txt", "local.txt", "sub/anch.txt",
    "sub/s/anch.txt", "sub/n.md", "sub/README.md", "sub/s/README.md", "plain.py",
    "we ird 'q' \"dq\" ;/ü é.txt", "new\nline.txt", "aq", "\\q", "]q", "-r", "]r", "as",
    "t/u", "tu", "ax", "nx", "zw", "aw",
]  # fmt: skip


@needs_git
def test_ignore_rules_agree_with_git(src: Path, blobs: BlobStore) -> None:
    put(src, ".gitignore", ORACLE_GITIGNORE)
    put(src, "sub/.gitignore", ORACLE_SUB_GITIGNORE)
    ours = kept(src, ORACLE_FILES, blobs)
    git(src, "init", "-q")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src,
        check=True,
        capture_output=True,
    ).stdout
    theirs = {os.fsdecode(p) for p in listed.split(b"\0") if p}
    assert ours == theirs
    assert len(ours) > 20  # the oracle kept plenty, so it was not vacuous
    assert "a.log" not in ours
    assert "sub/x.log" in ours


FUZZ_PIECES = ["a", "b", "ab", "*", "**", "?", "[ab]", "[!a]", "[b-a]", "/", "/", "\\*", ".", "c*"]
FUZZ_NAMES = ["a", "b", "ab", "ba", "aa", "c", "a.b", "*"]


def _fuzz_pattern(rng: random.Random) -> str:
    """A random gitignore line whose '**' runs are whole path components.

    (Glued '**' such as 'b**' is a plain '*' in the gitignore docs, and here; git's
    own matcher lets it cross '/' in anchored patterns, an implementation quirk.)
    """
    while True:
        body = "".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randint(1, 4)))
        if all(
            (m.start() == 0 or body[m.start() - 1] == "/")
            and (m.end() == len(body) or body[m.end()] == "/")
            for m in re.finditer(r"\*\*+", body)
        ):
            break
    if rng.random() < 0.2:
        body = "/" + body
    if rng.random() < 0.2:
        body += "/"
    return ("!" if rng.random() < 0.2 else "") + body


def _fuzz_tree(rng: random.Random) -> list[str]:
    paths = {
        "/".join(rng.choice(FUZZ_NAMES) for _ in range(rng.randint(1, 3)))
        for _ in range(rng.randint(5, 25))
    }
    folders = {"/".join(p.split("/")[:k]) for p in paths for k in range(1, p.count("/") + 1)}
    return sorted(paths - folders)


@needs_git
def test_ignore_rules_agree_with_git_on_random_patterns(tmp_path: Path) -> None:
    mismatches = []
    for case in range(300):
        rng = random.Random(case)
        src = tmp_path / f"case{case}"
        files = _fuzz_tree(rng)
        for rel in files:
            put(src, rel)
        rules = [_fuzz_pattern(rng) for _ in range(rng.randint(1, 5))]
        put(src, ".gitignore", "\n".join(rules) + "\n")
        folders = sorted({rel.rpartition("/")[0] for rel in files if "/" in rel})
        sub_rules: list[str] = []
        if folders and rng.random() < 0.5:
            sub = rng.choice(folders)
            sub_rules = [sub] + [_fuzz_pattern(rng) for _ in range(rng.randint(1, 3))]
            put(src, f"{sub}/.gitignore", "\n".join(sub_rules[1:]) + "\n")
        ours = names(take_snapshot(src, BlobStore(tmp_path / "blobs")))
        git(src, "init", "-q")
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=src,
            check=True,
            capture_output=True,
        ).stdout
        theirs = {os.fsdecode(p) for p in listed.split(b"\0") if p}
        if ours != theirs:
            mismatches.append((case, rules, sub_rules, ours ^ theirs))
    assert mismatches == []


# --------------------------------------------------------------------------- symlinks

needs_symlinks = pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")


@needs_symlinks
def test_symlink_to_a_file_inside_is_stored_as_its_content(src: Path, blobs: BlobStore) -> None:
    put(src, "data/real.csv", "a,b\n1,2\n")
    (src / "link.csv").symlink_to("data/real.csv")
    snap = take_snapshot(src, blobs)
    by_path = {e.path: e for e in snap.entries}
    assert by_path["link.csv"].digest == by_path["data/real.csv"].digest
    assert by_path["link.csv"].size == 8


@needs_symlinks
def test_symlink_to_a_folder_inside_includes_its_files(src: Path, blobs: BlobStore) -> None:
    put(src, "lib/a.py", "a")
    put(src, "lib/sub/b.py", "b")
    (src / "alias").symlink_to("lib", target_is_directory=True)
    assert names(take_snapshot(src, blobs)) == {
        "lib/a.py",
        "lib/sub/b.py",
        "alias/a.py",
        "alias/sub/b.py",
    }


@needs_symlinks
def test_links_outside_dangling_or_cyclic_are_left_out_with_one_warning(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    outside = put(tmp_path, "secret/passwords.txt", "hunter2")
    put(src, "train.py")
    (src / "out_file").symlink_to(outside)
    (src / "out_dir").symlink_to(outside.parent, target_is_directory=True)
    (src / "escape").symlink_to("../secret/passwords.txt")
    (src / "dangling").symlink_to("does-not-exist")
    (src / "sub").mkdir()
    (src / "sub" / "loop").symlink_to("..", target_is_directory=True)

    with pytest.warns(RunnerWarning, match=r"left out 5 symlink\(s\)") as record:
        snap = take_snapshot(src, blobs)

    assert len(record) == 1
    message = str(record[0].message)
    for name in ("out_file", "out_dir", "escape", "dangling", "sub/loop"):
        assert repr(name) in message
    assert "(outside the source folder)" in message
    assert "(dangling)" in message
    assert "(a cycle)" in message
    assert ".amlignore" in message
    assert names(snap) == {"train.py"}
    assert b"hunter2" not in b"".join(blobs.read_bytes(e.digest) for e in snap.entries)


@needs_symlinks
def test_mutual_folder_links_terminate(src: Path, blobs: BlobStore) -> None:
    put(src, "a/fa.txt", "a")
    put(src, "b/fb.txt", "b")
    (src / "a" / "to_b").symlink_to("../b", target_is_directory=True)
    (src / "b" / "to_a").symlink_to("../a", target_is_directory=True)
    with pytest.warns(RunnerWarning, match=r"\(a cycle\)"):
        snap = take_snapshot(src, blobs)
    assert {"a/fa.txt", "b/fb.txt", "a/to_b/fb.txt", "b/to_a/fa.txt"} <= names(snap)


@needs_symlinks
def test_ignored_bad_links_do_not_warn(tmp_path: Path, src: Path, blobs: BlobStore) -> None:
    put(src, ".amlignore", "env\ndangling\n")
    (src / "env").symlink_to(tmp_path, target_is_directory=True)
    (src / "dangling").symlink_to("nowhere")
    put(src, "a.py")
    assert names(take_snapshot(src, blobs)) == {".amlignore", "a.py"}  # no warning


@needs_symlinks
def test_source_given_through_a_symlink(tmp_path: Path, src: Path, blobs: BlobStore) -> None:
    put(src, "a.py")
    (src / "inner").symlink_to("a.py")
    via = tmp_path / "via"
    via.symlink_to(src, target_is_directory=True)
    assert take_snapshot(via, blobs) == take_snapshot(src, blobs)
    assert names(take_snapshot(via, blobs)) == {"a.py", "inner"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no fifos on this platform")
def test_special_files_are_left_out_with_a_warning(src: Path, blobs: BlobStore) -> None:
    put(src, "a.py")
    os.mkfifo(src / "pipe")
    with pytest.warns(RunnerWarning, match=r"left out 1 special file\(s\).*'pipe'"):
        snap = take_snapshot(src, blobs)
    assert names(snap) == {"a.py"}
    put(src, ".amlignore", "pipe\n")  # as the warning advises: silent now
    assert names(take_snapshot(src, blobs)) == {"a.py", ".amlignore"}


# --------------------------------------------------------------------------- size warnings


def test_warns_above_the_file_count(
    monkeypatch: pytest.MonkeyPatch, src: Path, blobs: BlobStore
) -> None:
    monkeypatch.setattr(snapmod, "FILE_WARN_COUNT", 3)
    for i in range(3):
        put(src, f"f{i}.py", "x")
    take_snapshot(src, blobs)  # exactly at the limit: no warning (warnings are errors here)
    put(src, "f3.py", "x")
    with pytest.warns(RunnerWarning, match=r"holds 4 files.*under 3 files.*\.amlignore"):
        take_snapshot(src, blobs)


def test_warns_above_the_size(monkeypatch: pytest.MonkeyPatch, src: Path, blobs: BlobStore) -> None:
    monkeypatch.setattr(snapmod, "SIZE_WARN_BYTES", 100)
    put(src, "a.bin", b"x" * 100)
    take_snapshot(src, blobs)
    put(src, "b.bin", b"y")
    with pytest.warns(RunnerWarning, match=r"holds 2 files, 0\.0 MB.*\.amlignore"):
        take_snapshot(src, blobs)


def test_ignored_files_do_not_count_toward_the_warning(
    monkeypatch: pytest.MonkeyPatch, src: Path, blobs: BlobStore
) -> None:
    monkeypatch.setattr(snapmod, "FILE_WARN_COUNT", 3)
    put(src, ".amlignore", "data/\n")
    for i in range(10):
        put(src, f"data/{i}.csv")
    put(src, "train.py")
    assert take_snapshot(src, blobs).file_count == 2


# --------------------------------------------------------------------------- stat cache


def bytes_read_by(fn: Callable[[], object]) -> int:
    """How many bytes this process read (read syscalls, /proc/self/io ``rchar``) in fn."""

    def rchar() -> int:
        text = Path("/proc/self/io").read_text()
        return int(next(x for x in text.splitlines() if x.startswith("rchar:")).split()[1])

    before = rchar()
    fn()
    return rchar() - before


def test_cache_hit_skips_rereading_unchanged_stat(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    cache = tmp_path / "cache" / "snapshot-cache"
    put(src, "model.bin", os.urandom(4 << 20))
    put(src, "other.py", "o")
    age(src)
    first = take_snapshot(src, blobs, cache_path=cache)
    assert cache.is_file()
    uncached = bytes_read_by(lambda: take_snapshot(src, blobs))
    assert uncached > 4 << 20  # without the cache the file is read again
    cached: list[Snapshot] = []
    assert bytes_read_by(lambda: cached.append(take_snapshot(src, blobs, cache_path=cache))) < (
        1 << 20
    )
    assert cached[0] == first  # the cache answered: the file was not read again


def test_cache_sees_new_content_behind_an_old_mtime(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    """Same size, same inode, the old mtime restored: only the ctime (which no process can
    set back) tells, and the cache looks at it."""
    cache = tmp_path / "cache" / "snapshot-cache"
    path = put(src, "model.py", "version = 1\n")
    age(src)
    first = take_snapshot(src, blobs, cache_path=cache)
    before = path.stat()
    with open(path, "r+b") as f:
        f.write(b"version = 2\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_ino == before.st_ino
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    second = take_snapshot(src, blobs, cache_path=cache)
    assert second.id != first.id
    assert blobs.read_bytes(second.entries[0].digest) == b"version = 2\n"


def test_cache_sees_a_changed_mtime(tmp_path: Path, src: Path, blobs: BlobStore) -> None:
    cache = tmp_path / "cache.bin"
    path = put(src, "model.py", "version = 1\n")
    age(src)
    first = take_snapshot(src, blobs, cache_path=cache)
    path.write_text("version = 2\n")
    os.utime(path, ns=(OLD_NS, OLD_NS + 1))
    second = take_snapshot(src, blobs, cache_path=cache)
    assert second.id != first.id
    assert blobs.read_bytes(second.entries[0].digest) == b"version = 2\n"


def test_cache_does_not_trust_a_just_modified_file(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    """A file modified within the racy window may change again without its stat changing."""
    cache = tmp_path / "cache"
    path = put(src, "fresh.py", "aaaa")
    now = path.stat()
    first = take_snapshot(src, blobs, cache_path=cache)
    with open(path, "r+b") as f:
        f.write(b"bbbb")
    os.utime(path, ns=(now.st_atime_ns, now.st_mtime_ns))
    assert take_snapshot(src, blobs, cache_path=cache).id != first.id


@pytest.mark.parametrize(
    "garbage",
    [b"", b"not a cache", b"runner-snapshot-cache/1 0000\n{}", b"\x00\xff" * 100],
    ids=["empty", "text", "bad-checksum", "binary"],
)
def test_corrupt_cache_is_rebuilt(
    tmp_path: Path, src: Path, blobs: BlobStore, garbage: bytes
) -> None:
    cache = tmp_path / "cache"
    put(src, "a.py", "a")
    age(src)
    expected = take_snapshot(src, blobs)
    cache.write_bytes(garbage)
    assert take_snapshot(src, blobs, cache_path=cache) == expected
    assert cache.read_bytes().startswith(b"runner-snapshot-cache/1 ")  # rewritten, valid


def test_truncated_cache_is_rebuilt(tmp_path: Path, src: Path, blobs: BlobStore) -> None:
    cache = tmp_path / "cache"
    put(src, "a.py", "a")
    age(src)
    expected = take_snapshot(src, blobs, cache_path=cache)
    cache.write_bytes(cache.read_bytes()[:-5])
    assert take_snapshot(src, blobs, cache_path=cache) == expected


def test_wellformed_cache_with_bad_entries_is_ignored_entry_by_entry(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    cache = tmp_path / "cache"
    put(src, "a.py", "a")
    put(src, "b.py", "b")
    age(src)
    expected = take_snapshot(src, blobs, cache_path=cache)
    real = os.path.realpath(src)
    sources = {real: {"store": "x", "snapshot": "y", "files": {"a.py": "oops", "b.py": [1]}}}
    body = json.dumps(sources).encode()
    cache.write_bytes(
        b"runner-snapshot-cache/1 " + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
    )
    assert take_snapshot(src, blobs, cache_path=cache) == expected


def test_unwritable_cache_only_warns(tmp_path: Path, src: Path, blobs: BlobStore) -> None:
    blocker = put(tmp_path, "file-not-folder", "x")
    put(src, "a.py", "a")
    with pytest.warns(RunnerWarning, match=r"could not write the snapshot cache"):
        snap = take_snapshot(src, blobs, cache_path=blocker / "cache")
    assert names(snap) == {"a.py"}


def test_one_cache_serves_several_sources(tmp_path: Path, blobs: BlobStore) -> None:
    cache = tmp_path / "cache"
    one, two = tmp_path / "one", tmp_path / "two"
    put(one, "a.bin", os.urandom(2 << 20))
    put(two, "a.bin", os.urandom(2 << 20))
    age(one)
    age(two)
    first = take_snapshot(one, blobs, cache_path=cache), take_snapshot(two, blobs, cache_path=cache)
    again: list[Snapshot] = []

    def both() -> None:
        again.extend(take_snapshot(f, blobs, cache_path=cache) for f in (one, two))

    assert bytes_read_by(both) < 1 << 20  # both answered by the one cache: nothing re-read
    assert tuple(again) == first


def test_cache_from_another_store_still_fills_this_store(tmp_path: Path, src: Path) -> None:
    cache = tmp_path / "cache"
    put(src, "a.py", "alpha")
    put(src, "b/c.py", "gamma")
    age(src)
    first_store = BlobStore(tmp_path / "store1")
    second_store = BlobStore(tmp_path / "store2")
    snap = take_snapshot(src, first_store, cache_path=cache)
    again = take_snapshot(src, second_store, cache_path=cache)
    assert again == snap
    out = tmp_path / "out"
    materialize(load_snapshot(second_store, snap.id), second_store, out)
    assert (out / "b/c.py").read_text() == "gamma"


def test_cache_hit_does_not_recopy_blobs(tmp_path: Path, src: Path, blobs: BlobStore) -> None:
    cache = tmp_path / "cache"
    put(src, "a.py", "a" * 10000)
    age(src)
    take_snapshot(src, blobs, cache_path=cache)
    stored = {p: p.stat().st_mtime_ns for p in blob_files(blobs)}
    cache_mtime = cache.stat().st_mtime_ns
    take_snapshot(src, blobs, cache_path=cache)
    assert {p: p.stat().st_mtime_ns for p in blob_files(blobs)} == stored
    assert cache.stat().st_mtime_ns == cache_mtime  # nothing changed: not rewritten


def test_touched_big_file_is_hashed_again_but_not_copied_again(
    tmp_path: Path, src: Path, blobs: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    big = put(src, "weights.bin", os.urandom(3 << 20))  # above the streaming threshold
    age(src)
    first = take_snapshot(src, blobs, cache_path=cache)
    copies: list[object] = []
    real_put_fd = blobs.put_fd  # (big files are copied by put_fd)

    def counting_put_fd(fd: int) -> tuple[str, int]:
        copies.append(fd)
        return real_put_fd(fd)

    monkeypatch.setattr(blobs, "put_fd", counting_put_fd)
    os.utime(big, ns=(OLD_NS, OLD_NS + 10**9))  # touched: new mtime, same content
    assert take_snapshot(src, blobs, cache_path=cache) == first
    assert copies == []
    big.write_bytes(os.urandom(3 << 20))  # new content of the same size: copied once
    os.utime(big, ns=(OLD_NS, OLD_NS + 2 * 10**9))
    second = take_snapshot(src, blobs, cache_path=cache)
    assert len(copies) == 1
    assert blobs.read_bytes(second.entries[0].digest) == big.read_bytes()


# --------------------------------------------------------------------------- load, materialize, zip


def test_load_snapshot_round_trip(src: Path, blobs: BlobStore) -> None:
    put(src, "a.py", "a")
    put(src, "x/run.sh", "#!/bin/sh\n", executable=True)
    snap = take_snapshot(src, blobs)
    assert load_snapshot(blobs, snap.id) == snap


@pytest.mark.parametrize("bad_id", ["0" * 64, "not-hex", "", "../../etc/passwd"])
def test_load_unknown_snapshot_is_not_found(blobs: BlobStore, bad_id: str) -> None:
    with pytest.raises(NotFoundError, match=r"not found in .*; pass the id that take_snapshot"):
        load_snapshot(blobs, bad_id)


def test_load_a_blob_that_is_not_a_manifest_is_a_store_error(src: Path, blobs: BlobStore) -> None:
    put(src, "a.py", "not json")
    snap = take_snapshot(src, blobs)
    with pytest.raises(StoreError, match=r"is not a valid manifest"):
        load_snapshot(blobs, snap.entries[0].digest)


@pytest.mark.parametrize("bad_path", ["../evil", "/etc/passwd", "a//b", "a/./b", "", "a/"])
def test_load_a_manifest_that_climbs_out_is_a_store_error(blobs: BlobStore, bad_path: str) -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    evil = {"format": "runner-snapshot/1", "files": [[bad_path, digest, 1, 0]]}
    snapshot_id = blobs.put_bytes(json.dumps(evil).encode())
    with pytest.raises(StoreError, match=r"is not a valid manifest \(bad path"):
        load_snapshot(blobs, snapshot_id)


def test_materialize_refuses_a_hand_made_snapshot_that_climbs_out(
    tmp_path: Path, blobs: BlobStore
) -> None:
    digest = blobs.put_bytes(b"x")
    evil = Snapshot("0" * 64, (SnapshotEntry("../evil", digest, 1, False),))
    with pytest.raises(ConfigError, match=r"not a relative path inside the snapshot"):
        materialize(evil, blobs, tmp_path / "dest")
    assert not (tmp_path / "evil").exists()


def test_materialize_round_trip_keeps_content_and_executable_bit(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    put(src, "train.py", "print('x')\n")
    put(src, "bin/run.sh", "#!/bin/sh\necho hi\n", executable=True)
    put(src, "a/b/c/data.bin", os.urandom(3 << 20))  # above the streaming threshold
    snap = take_snapshot(src, blobs)
    dest = tmp_path / "dest"
    dest.mkdir()  # an existing empty folder is fine

    materialize(snap, blobs, dest)

    for entry in snap.entries:
        path = dest / entry.path
        assert path.read_bytes() == (src / entry.path).read_bytes()
        mode = path.stat().st_mode
        assert bool(mode & stat.S_IXUSR) == entry.executable
        assert mode & stat.S_IWUSR  # a writable copy, not the read-only blob
        assert path.stat().st_ino != blobs.path_of(entry.digest).stat().st_ino
    assert take_snapshot(dest, blobs).id == snap.id
    (dest / "train.py").write_text("edited")  # writing the copy leaves the store alone
    assert blobs.read_bytes(snap.entries[-1].digest) == b"print('x')\n"


def test_materialize_into_a_nonempty_folder_is_refused(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    put(src, "a.py")
    snap = take_snapshot(src, blobs)
    dest = tmp_path / "dest"
    put(dest, "already-here.txt")
    with pytest.raises(ConfigError, match=r"not an empty folder; pass a new or empty folder"):
        materialize(snap, blobs, dest)


def test_materialize_with_a_missing_blob_is_a_store_error(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    put(src, "a.py", "content")
    snap = take_snapshot(src, blobs)
    blob = blobs.path_of(snap.entries[0].digest)
    blob.chmod(0o644)
    blob.unlink()
    with pytest.raises(
        StoreError, match=r"file 'a.py' of snapshot \w+ is missing from the workspace"
    ):
        materialize(snap, blobs, tmp_path / "dest")


def test_to_zip_round_trip(tmp_path: Path, src: Path, blobs: BlobStore) -> None:
    put(src, "train.py", "print('x')\n")
    put(src, "bin/run.sh", "#!/bin/sh\n", executable=True)
    put(src, "empty.txt", b"")
    snap = take_snapshot(src, blobs)

    out = to_zip(snap, blobs, str(tmp_path / "zips" / "snap.zip"))

    assert out == tmp_path / "zips" / "snap.zip"
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == sorted(names(snap))
        for entry in snap.entries:
            assert zf.read(entry.path) == (src / entry.path).read_bytes()
            mode = zf.getinfo(entry.path).external_attr >> 16
            assert bool(mode & stat.S_IXUSR) == entry.executable
        extracted = tmp_path / "extracted"
        zf.extractall(extracted)
    assert (extracted / "bin/run.sh").read_text() == "#!/bin/sh\n"
    # Deterministic: the same snapshot gives the same bytes.
    again = to_zip(snap, blobs, tmp_path / "again.zip")
    assert again.read_bytes() == out.read_bytes()
    assert [p.name for p in (tmp_path / "zips").iterdir()] == ["snap.zip"]  # no tmp left


WEIRD_FILES = [
    "with space.txt",
    "single'quote.txt",
    'double"quote.txt',
    "semi;colon.txt",
    "new\nline.txt",
    "ünïcödé/日本語.txt",
    "dollar$HOME.txt",
    " leading space",
    "back\\slash",
    "c:colon",
    " ",
    "...",
    "-dash",
]


def test_weird_names_survive_every_round_trip(
    tmp_path: Path, weird_path: Path, blobs: BlobStore
) -> None:
    for i, rel in enumerate(WEIRD_FILES):
        put(weird_path, rel, f"content {i}")
    snap = take_snapshot(weird_path, blobs)
    assert names(snap) == set(WEIRD_FILES)
    assert load_snapshot(blobs, snap.id) == snap

    dest = tmp_path / "dest"
    materialize(snap, blobs, dest)
    for i, rel in enumerate(WEIRD_FILES):
        assert (dest / rel).read_text() == f"content {i}"

    with zipfile.ZipFile(to_zip(snap, blobs, weird_path / ".." / "weird.zip")) as zf:
        assert sorted(zf.namelist()) == sorted(WEIRD_FILES)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are bytes")
def test_non_utf8_file_names_round_trip(tmp_path: Path, src: Path, blobs: BlobStore) -> None:
    raw = os.fsencode(src) + b"/caf\xe9.txt"  # Latin-1, not UTF-8
    with open(raw, "wb") as f:
        f.write(b"latin")
    snap = take_snapshot(src, blobs)
    assert load_snapshot(blobs, snap.id) == snap
    dest = tmp_path / "dest"
    materialize(snap, blobs, dest)
    with open(os.fsencode(dest) + b"/caf\xe9.txt", "rb") as f:
        assert f.read() == b"latin"
    with pytest.raises(ConfigError, match=r"is not valid UTF-8, which a zip file cannot hold"):
        to_zip(snap, blobs, tmp_path / "latin.zip")
    assert list(tmp_path.glob("*.zip*")) == []  # no half-written zip left behind


def test_snapshot_is_frozen(src: Path, blobs: BlobStore) -> None:
    put(src, "a.py")
    snap = take_snapshot(src, blobs)
    with pytest.raises(AttributeError, match=r"cannot assign to field"):
        snap.id = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------- git properties

GIT_KEYS = {
    "azureml.git.repository_uri",
    "azureml.git.branch",
    "azureml.git.commit",
    "azureml.git.dirty",
    "mlflow.source.git.repoURL",
    "mlflow.source.git.branch",
    "mlflow.source.git.commit",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    put(path, "proj/train.py", "print(1)\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    return path


@needs_git
def test_git_properties_of_a_clean_repo(repo: Path) -> None:
    props = git_properties(repo / "proj")
    commit = git(repo, "rev-parse", "HEAD")
    top = git(repo, "rev-parse", "--show-toplevel")
    assert set(props) == GIT_KEYS
    assert props["azureml.git.commit"] == props["mlflow.source.git.commit"] == commit
    assert props["azureml.git.branch"] == props["mlflow.source.git.branch"] == "main"
    assert props["azureml.git.repository_uri"] == props["mlflow.source.git.repoURL"] == top
    assert props["azureml.git.dirty"] == "False"


@needs_git
def test_git_properties_dirty_and_remote(repo: Path) -> None:
    (repo / "proj" / "train.py").write_text("print(2)\n")
    git(repo, "remote", "add", "origin", "https://example.com/team/proj.git")
    props = git_properties(repo / "proj")
    assert props["azureml.git.dirty"] == "True"
    assert props["azureml.git.repository_uri"] == "https://example.com/team/proj.git"
    assert props["mlflow.source.git.repoURL"] == "https://example.com/team/proj.git"


@needs_git
def test_git_properties_untracked_file_is_dirty(repo: Path) -> None:
    put(repo, "proj/new.py")
    assert git_properties(repo)["azureml.git.dirty"] == "True"


@needs_git
def test_git_properties_of_a_file_and_other_branches(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature/x")
    assert git_properties(repo / "proj" / "train.py")["azureml.git.branch"] == "feature/x"
    git(repo, "checkout", "-q", "--detach")
    assert git_properties(repo)["azureml.git.branch"] == "HEAD"


@needs_git
def test_git_properties_without_commits(tmp_path: Path) -> None:
    path = tmp_path / "fresh"
    path.mkdir()
    git(path, "init", "-q", "-b", "trunk")
    props = git_properties(path)
    assert props["azureml.git.branch"] == "trunk"
    assert "azureml.git.commit" not in props
    assert props["azureml.git.dirty"] == "False"


@needs_git
def test_git_properties_outside_a_repo_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    folder = tmp_path / "plain"
    folder.mkdir()
    assert git_properties(folder) == {}
    assert git_properties(tmp_path / "missing") == {}


def test_git_properties_without_git_is_empty(
    repo_or_plain: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    assert git_properties(repo_or_plain) == {}


@pytest.fixture
def repo_or_plain(tmp_path: Path) -> Path:
    """A git repo when git is installed, else a plain folder."""
    path = tmp_path / "maybe-repo"
    path.mkdir()
    if HAS_GIT:
        git(path, "init", "-q")
    return path


@needs_git
def test_git_properties_with_a_weird_path(weird_path: Path) -> None:
    put(weird_path, "a.py")
    git(weird_path, "init", "-q", "-b", "main")
    git(weird_path, "add", ".")
    git(weird_path, "commit", "-q", "-m", "x")
    props = git_properties(weird_path)
    assert Path(props["azureml.git.repository_uri"]).resolve() == weird_path.resolve()
    assert props["azureml.git.dirty"] == "False"


@needs_git
def test_snapshot_of_a_repo_leaves_git_out(repo: Path, blobs: BlobStore) -> None:
    assert names(take_snapshot(repo, blobs)) == {"proj/train.py"}


# --------------------------------------------------------------------------- packs


def test_a_cold_snapshot_of_many_small_files_is_one_pack(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    contents = {f"pkg{i % 7}/mod{i}.py": os.urandom(100 + i) for i in range(300)}
    for rel, data in contents.items():
        put(src, rel, data)
    put(src, "big.bin", os.urandom(2 << 20))  # big files stay loose (streamed)
    snap = take_snapshot(src, blobs)
    packs = sorted(p.name for p in (blobs.root / "packs").iterdir())
    assert [Path(p).suffix for p in packs] == [".idx", ".pack"]
    loose = {p for p in blob_files(blobs) if p.parent.name != "packs"}
    assert len(loose) == 2  # the big file and the manifest
    # A store opened afresh (as another process would) reads the packed files back.
    again = BlobStore(blobs.root)
    out = tmp_path / "out"
    materialize(load_snapshot(again, snap.id), again, out)
    for rel, data in contents.items():
        assert (out / rel).read_bytes() == data
    with zipfile.ZipFile(to_zip(snap, again, tmp_path / "s.zip")) as zf:
        assert zf.read("pkg3/mod3.py") == contents["pkg3/mod3.py"]
    # Stored once: a second cold snapshot of the same files (another folder) adds nothing.
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    assert take_snapshot(copy, again).id == snap.id
    assert sorted(p.name for p in (blobs.root / "packs").iterdir()) == packs


def test_a_damaged_packed_blob_is_said_and_storing_it_again_repairs_it(
    tmp_path: Path, src: Path, blobs: BlobStore
) -> None:
    for i in range(40):
        put(src, f"f{i}.py", f"# file {i}\n" * 3)
    snap = take_snapshot(src, blobs)
    entry = next(e for e in snap.entries if e.path == "f7.py")
    pack, offset, _ = blobs.packed()[entry.digest]
    os.chmod(pack, 0o600)
    with open(pack, "r+b") as f:
        f.seek(offset + 2)
        f.write(b"X")
    fresh = BlobStore(blobs.root)
    with pytest.raises(StoreError, match=r"file 'f7\.py' of snapshot .* is damaged"):
        materialize(load_snapshot(fresh, snap.id), fresh, tmp_path / "out")
    assert fresh.digest_of_stored(entry.digest) != entry.digest
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    take_snapshot(copy, fresh)  # the same content stored again: loose, and read first
    materialize(load_snapshot(fresh, snap.id), fresh, tmp_path / "out2")
    assert (tmp_path / "out2" / "f7.py").read_text() == "# file 7\n" * 3


def test_put_fd_copies_in_the_kernel_or_streams_what_it_cannot(
    tmp_path: Path, blobs: BlobStore
) -> None:
    data = os.urandom(3 << 20)
    path = put(tmp_path, "big.bin", data)
    with open(path, "rb") as f:
        f.seek(1000)  # from the file's offset on
        digest, size = blobs.put_fd(f.fileno())
    assert (digest, size) == (hashlib.sha256(data[1000:]).hexdigest(), len(data) - 1000)
    assert blobs.read_bytes(digest) == data[1000:]
    read_end, write_end = os.pipe()  # copy_file_range refuses a pipe: streamed instead
    os.write(write_end, b"through a pipe")
    os.close(write_end)
    try:
        assert blobs.put_fd(read_end) == (hashlib.sha256(b"through a pipe").hexdigest(), 14)
    finally:
        os.close(read_end)
    assert [p for p in blobs.root.rglob("*") if ".tmp-" in p.name] == []
