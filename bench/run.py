"""`make bench`: time `cas` against the tools users would reach for instead.

Every case runs our command and its reference tool(s) in the same process, on the same
data, alternating between them round by round (the order flips each round so that a
drifting machine penalises neither), and reports the median of several runs. Absolute
times on a shared machine are noisy; the ratios are what to read.

Each timed run starts after a `sync`, so that the dirty pages of the previous run (or of
the data set-up) are not flushed on the next run's clock.

Plain Python: standard library and subprocess only, so that it runs before anything is
installed but the `cas` under test. Usage::

    python bench/run.py [--scale 1.0] [--runs 5] [--only put-1gib,fsck] [--tmp DIR]

`--scale` shrinks (or grows) every data set; `make bench-smoke` runs `--scale 0.01` in
seconds so that CI keeps this script working. The table goes to stdout and, as JSON, to
`bench/out/results.json` (or `--out`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: The cores this process may run on: what `cas` uses for `--jobs` by default.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
MiB = 1 << 20
GiB = 1 << 30


# -- running and timing ------------------------------------------------------


@dataclass
class Variant:
    """One command to time: ours, or a reference tool."""

    label: str  # what the table shows
    argv: list[str]
    cwd: Path | None = None
    setup: Callable[[], None] | None = None  # untimed, before every run
    env: dict[str, str] | None = None
    max_runs: int | None = None  # for a reference too slow to run every round
    exit_code: int = 0  # what a run must exit with (a timed failure: not 0)
    times: list[float] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)  # bytes, per run
    written: list[int] = field(default_factory=list)  # bytes sent to storage, per run
    cpu: list[float] = field(default_factory=list)  # user+sys seconds, per run

    def median(self) -> float:
        return statistics.median(self.times)


@dataclass
class Case:
    """A row group of the table: our variant first, then its references."""

    key: str
    title: str
    ours: Variant
    refs: list[Variant]
    target: float | None = None  # the ratio ours/refs[0] must not exceed
    note: str = ""
    rate: tuple[int, str] | None = None  # (items, unit): also report ours in items/s


def timed(v: Variant) -> tuple[float, int, int, float]:
    """Run `v` once; its wall-clock seconds, peak RSS and bytes written, in bytes, and
    its user+sys CPU seconds (its own and its waited-for children's, from rusage).

    Bytes written are the child's (and its waited-for children's) block output as
    rusage counts it: `write_bytes` of /proc/<pid>/io, the bytes it caused to be sent to
    storage (page-cache pages it dirtied, at the time it dirtied them), in 512-byte units.
    """
    env = {**os.environ, **(v.env or {})}
    start = time.perf_counter()
    p = subprocess.Popen(
        v.argv, cwd=v.cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert p.stderr is not None
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stderr.close()
    if p.returncode != v.exit_code:
        raise SystemExit(
            f"bench: {' '.join(v.argv[:4])} ... failed with exit {p.returncode}:\n"
            + err.decode(errors="replace")[-2000:]
        )
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, usage.ru_maxrss * 1024, usage.ru_oublock * 512, cpu


def measure(case: Case, runs: int) -> None:
    """Time every variant of `case` `runs` times, alternating, order flipped each round."""
    variants = [case.ours, *case.refs]
    for r in range(runs):
        order = variants if r % 2 == 0 else variants[::-1]
        ran = []
        for v in order:
            if v.max_runs is not None and len(v.times) >= v.max_runs:
                continue
            ran.append(v)
            if v.setup is not None:
                v.setup()
            os.sync()
            t, rss, written, cpu = timed(v)
            v.times.append(t)
            v.peak_rss.append(rss)
            v.written.append(written)
            v.cpu.append(cpu)
        shown = "  ".join(f"{v.label} {v.times[-1]:.3f}s" for v in variants if v in ran)
        print(f"  [{case.key} {r + 1}/{runs}] {shown}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], cwd: Path | None = None) -> None:
    """An untimed helper command (data set-up); fail loudly."""
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def rmtree(path: Path) -> None:
    """`rm -rf`, also through the read-only directories git-annex leaves (made writable
    only when met: a chmod of every file of a million-entry ledger takes minutes)."""
    if not path.exists():
        return
    try:
        shutil.rmtree(path)
    except PermissionError:
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
        shutil.rmtree(path)


# -- data ---------------------------------------------------------------------


def write_random(path: Path, size: int) -> None:
    """`size` incompressible bytes (so that git's zlib gets no free ride)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(os.urandom(n))
            left -= n


def small_tree(root: Path, count: int, size: int = 4096) -> list[str]:
    """`count` files of `size` bytes, 100 to a directory; their paths relative to `root`."""
    names = []
    for i in range(count):
        d = root / f"d{i // 100:03d}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        (d / f"f{i % 100:03d}").write_bytes(os.urandom(size))
        names.append(f"d{i // 100:03d}/f{i % 100:03d}")
    return names


def mixed_sizes(total: int) -> list[int]:
    """File sizes for a store of about `total` bytes: a few large, many small.

    Half the bytes in files of total/8, a quarter in files of total/256, the rest in
    files of 64 KiB, plus as many 4 KiB files as there are 64 KiB ones.
    """
    sizes: list[int] = []
    for share, each in ((total // 2, total // 8), (total // 4, total // 256), (total // 4, 65536)):
        each = max(each, 4096)
        sizes += [each] * max(1, share // each)
    sizes += [4096] * sizes.count(65536)
    return sizes


# -- the cases ----------------------------------------------------------------


@dataclass
class Bench:
    cas: str  # the `cas` executable under test
    python: str  # the interpreter it runs on
    work: Path  # scratch space, removed at the end
    scale: float

    def store(self, name: str) -> Path:
        """A fresh, empty store (re-created by the returned path's caller each run)."""
        s = self.work / name
        rmtree(s)
        run([self.cas, "init", str(s)])
        return s

    def put_args(self, store: Path) -> list[str]:
        return [self.cas, "--store", str(store), "put"]

    # 1. one large file, durable
    def case_put_large(self) -> Case:
        size = max(MiB, int(GiB * self.scale))
        src = self.work / "large.bin"
        write_random(src, size)
        store = self.work / "store-large"
        copy = self.work / "large.copy"

        def fresh_store() -> None:
            self.store("store-large")

        def no_copy() -> None:
            copy.unlink(missing_ok=True)

        return Case(
            "put-large",
            f"put one {size // MiB} MiB file, durable",
            Variant("cas put", [*self.put_args(store), str(src)], setup=fresh_store),
            [
                Variant(
                    "dd bs=8M conv=fsync",
                    ["dd", f"if={src}", f"of={copy}", "bs=8M", "conv=fsync", "status=none"],
                    setup=no_copy,
                )
            ],
            target=1.2,
        )

    # 1b. the same large file again: stored already, so hashed and not written
    def case_reput_large(self) -> Case:
        size = max(MiB, int(GiB * self.scale))
        src = self.work / "large.bin"
        if not src.exists() or src.stat().st_size != size:
            write_random(src, size)
        store = self.store("store-reput")
        run([*self.put_args(store), str(src)])
        return Case(
            "reput-large",
            f"put the same {size // MiB} MiB file again (stored already)",
            Variant("cas put", [*self.put_args(store), str(src)]),
            [Variant("b3sum", ["b3sum", str(src)])],
            target=2.0,  # as put-dedup: hashing, plus the interpreter's start-up
            note="a stored large file is hashed first and not rewritten: no data is "
            "written (see the bytes-written row)",
        )

    # 2. many small files in one call
    def case_put_many(self, tree: Path, names: list[str]) -> Case:
        store = self.work / "store-many"
        gitdir = tree / ".git"
        annex_tree = self.work / "annex-tree"

        def fresh_store() -> None:
            self.store("store-many")

        def fresh_repo() -> None:
            rmtree(gitdir)
            run(["git", "init", "-q"], cwd=tree)

        def fresh_annex() -> None:
            rmtree(annex_tree)
            shutil.copytree(tree, annex_tree, ignore=shutil.ignore_patterns(".git"))
            run(["git", "init", "-q"], cwd=annex_tree)
            run(["git", "annex", "init", "-q", "bench"], cwd=annex_tree)

        git_durable = ["-c", "core.fsync=loose-object", "-c", "core.fsyncMethod=batch"]
        refs = [
            Variant(
                "git add (fsync=loose-object, batch)",
                ["git", *git_durable, "add", "."],
                cwd=tree,
                setup=fresh_repo,
            ),
            Variant("git add (defaults)", ["git", "add", "."], cwd=tree, setup=fresh_repo),
        ]
        if shutil.which("git-annex"):
            refs.append(
                Variant(
                    "git annex add",
                    ["git", "annex", "add", "-q", "."],
                    cwd=annex_tree,
                    setup=fresh_annex,
                    max_runs=2,  # minutes a run at full scale; it is not close either way
                )
            )
        return Case(
            "put-many",
            f"put {len(names)} files of 4 KiB, one call",
            Variant("cas put", [*self.put_args(store), *names], cwd=tree, setup=fresh_store),
            refs,
            target=1.0,
            note="git's defaults do not fsync loose objects; the target is against the "
            "git that makes them durable, as `cas put` does (fastest such mode: batch)",
        )

    # 3. the same tree again: everything is stored already
    def case_put_dedup(self, tree: Path, names: list[str]) -> Case:
        store = self.store("store-dedup")
        run([*self.put_args(store), *names], cwd=tree)
        return Case(
            "put-dedup",
            f"put the same {len(names)} files again (dedup)",
            Variant(f"cas put ({CORES} jobs)", [*self.put_args(store), *names], cwd=tree),
            [
                Variant("b3sum", ["b3sum", *names], cwd=tree),
                Variant("cas put --jobs 1", [*self.put_args(store), "-j1", *names], cwd=tree),
            ],
            target=2.0,
        )

    # 4. fsck of a store of mixed sizes
    def case_fsck(self) -> Case:
        total = max(4 * MiB, int(2 * GiB * self.scale))
        sizes = mixed_sizes(total)
        src = self.work / "fsck-src"
        src.mkdir()
        store = self.store("store-fsck")
        batch: list[str] = []
        for i, size in enumerate(sizes):
            name = f"{i:05d}"
            write_random(src / name, size)
            batch.append(name)
            if len(batch) == 1000 or i == len(sizes) - 1:
                run([*self.put_args(store), *batch], cwd=src)
                for n in batch:
                    (src / n).unlink()
                batch = []
        objects = store / "objects" / "blake3"
        files = sorted(f"{d.name}/{f.name}" for d in objects.iterdir() for f in d.iterdir())
        return Case(
            "fsck",
            f"fsck a {sum(sizes) // MiB} MiB store, {len(sizes)} objects of mixed sizes",
            Variant(f"cas fsck ({CORES} jobs)", [self.cas, "--store", str(store), "fsck"]),
            [
                Variant("b3sum (default threads)", ["b3sum", *files], cwd=objects),
                Variant("cas fsck --jobs 1", [self.cas, "--store", str(store), "fsck", "-j1"]),
            ],
            target=1.3 if CORES <= 2 else 1.5,
        )

    # 5. start-up: what one call costs before it does anything
    def startup_cases(self) -> list[Case]:
        note = "the interpreter is the same one `cas` runs on, in the same environment"
        one = self.work / "one-4k.bin"
        store = self.store("store-one")

        def new_file() -> None:  # a new object every run: a durable put, not a dedup
            one.write_bytes(os.urandom(4096))

        py = Variant("python -c pass", [self.python, "-c", "pass"])
        return [
            Case(
                "startup",
                "CLI start-up: cas --version",
                Variant("cas --version", [self.cas, "--version"]),
                [py],
                target=3.0,
                note=note,
            ),
            Case(
                "startup",
                "CLI start-up: cas put of one new 4 KiB file (durable)",
                Variant("cas put", [*self.put_args(store), str(one)], setup=new_file),
                [Variant("python -c pass", [self.python, "-c", "pass"])],
                target=3.0,
                note=note + "; the put includes its two fsyncs",
            ),
            Case(
                "startup",
                "CLI start-up: cas --help",
                Variant("cas --help", [self.cas, "--help"]),
                [Variant("python -c pass", [self.python, "-c", "pass"])],
                note="report only",
            ),
            self.dry_run_case(note),
        ]

    def dry_run_case(self, note: str) -> Case:
        """`promote --dry-run` of a staged 1-target capsule (steps 1-4: the capsule and
        its signed evidence verified, the policy asked, the entry planned; nothing
        written), against the interpreter's start-up."""
        ws = self.workspace("startup-promote")
        src = self.work / "startup-promote-objects"
        src.mkdir()
        (src / "A").write_bytes(b"A" * 4096)
        self.stage_release(ws, {"release/x": src / "A"})
        return Case(
            "startup",
            "CLI start-up: promote --dry-run of one target",
            Variant("promote --dry-run", [self.promote, "--dry-run", "capsule.json"], cwd=ws),
            [Variant("python -c pass", [self.python, "-c", "pass"])],
            target=6.0,
            note=note + "; the default engine (regorus) evaluates in a child process",
        )

    # -- promote -------------------------------------------------------------

    @property
    def promote(self) -> str:
        return str(Path(self.cas).parent / "promote")

    def release_tree(self, k: int, count: int) -> Path:
        """Release `k`: `count` new files of 4 KiB, the same bytes for every variant."""
        root = self.work / "releases" / f"r{k:03d}"
        if not root.exists():
            root.mkdir(parents=True)
            small_tree(root, count)
        return root

    def workspace(self, name: str) -> Path:
        ws = self.work / name
        run([self.promote, "init", str(ws)])
        return ws

    def put_json(self, ws: Path, names: Sequence[str], cwd: Path) -> list[dict[str, Any]]:
        out = subprocess.run(
            [self.cas, "--store", str(ws / ".cas"), "put", "--json", *names],
            cwd=cwd,
            check=True,
            capture_output=True,
        ).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def attest(self, ws: Path, files: Sequence[Path]) -> str:
        """Untimed, as the CHECK phase would: a passing CHECK predicate about `files`,
        signed with the workspace's demo checker key (`promote attest`, as
        examples/demo.sh does); the attestation's digest in the store."""
        base = Path(os.path.commonpath([f.parent for f in files]))
        predicate = ws / "check.json"
        predicate.write_text(json.dumps(CHECK_PREDICATE))
        out = subprocess.run(
            [
                *(self.promote, "--root", str(ws), "attest"),
                *("--key", str(ws / ".promote/keys/checker.pem")),
                *("--predicate-type", CHECK_TYPE),
                *(f"--subject={f.relative_to(base)}" for f in files),
                str(predicate),
            ],
            cwd=base,
            check=True,
            capture_output=True,
        ).stdout
        return out.split()[0].decode()

    def stage_release(self, ws: Path, targets: dict[str, Path]) -> None:
        """Untimed, as a builder and CHECK would: put the objects and a signed CHECK
        attestation covering them, then write `capsule.json` for them, guarded on now."""
        by_dir: dict[Path, list[str]] = {}
        for path in targets.values():
            by_dir.setdefault(path.parent, []).append(path.name)
        put: dict[Path, dict[str, Any]] = {}
        for d, names in by_dir.items():
            for rec in self.put_json(ws, names, d):
                put[d / rec["path"]] = rec
        check = self.attest(ws, list(targets.values()))
        args = [f"--target={t}={put[p]['digest']}" for t, p in targets.items()]
        run(
            [self.promote, "capsule", "new", *args, "--attestation", check, *GUARDED],
            cwd=ws,
        )

    # 6. one promotion of many changed targets, against git commit
    def case_promote_targets(self) -> Case:
        count = max(10, int(1000 * self.scale))
        # The same release k for every variant: release 0 is there before timing starts.
        names = [f"d{i // 100:03d}/f{i % 100:03d}" for i in range(count)]  # small_tree's
        ws = self.workspace("promote-targets")

        def targets(k: int) -> dict[str, Path]:
            root = self.release_tree(k, count)
            return {f"release/{n}": root / n for n in names}

        self.stage_release(ws, targets(0))
        run([self.promote, "capsule.json"], cwd=ws)

        git_durable = ["-c", "core.fsync=loose-object", "-c", "core.fsyncMethod=batch"]
        repos = {}
        for tag in ("durable", "defaults"):
            repo = self.work / f"git-{tag}"
            shutil.copytree(self.release_tree(0, count), repo / "release")
            run(["git", "init", "-q"], cwd=repo)
            run(["git", "add", "."], cwd=repo)
            run(
                ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "r0"],
                cwd=repo,
            )
            repos[tag] = repo

        ours = Variant("promote capsule.json", [self.promote, "capsule.json"], cwd=ws)
        ours.setup = lambda: self.stage_release(ws, targets(len(ours.times) + 1))

        def git_variant(label: str, tag: str, flags: list[str]) -> Variant:
            repo = repos[tag]
            ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
            v = Variant(label, ["git", *flags, *ident, "commit", "-a", "-q", "-m", "r"], cwd=repo)

            def setup() -> None:  # the builder writes the new release into the work tree
                src = self.release_tree(len(v.times) + 1, count)
                shutil.copytree(src, repo / "release", dirs_exist_ok=True)

            v.setup = setup
            return v

        return Case(
            "promote-targets",
            f"promote {count} changed targets vs git commit of the same paths",
            ours,
            [
                git_variant("git commit -a (fsync=loose-object, batch)", "durable", git_durable),
                git_variant("git commit -a (defaults)", "defaults", []),
            ],
            target=1.0,
            note="every round is a new release of the same paths (new bytes): promote's "
            "objects are in the store with a signed CHECK attestation, git's files in the "
            "work tree; promote re-hashes them, verifies the attestation, asks the policy, "
            "commits and switches the view, git hashes, stores and commits them",
        )

    # 6b. the memory of one promotion of many targets
    def promote_rss_row(self) -> dict[str, Any]:
        """Peak RSS of `promote capsule.json` of 100,000 new 4 KiB targets (at scale 1),
        staged as a builder and CHECK would: `cas put` of the files, signed CHECK
        attestations about them (`promote attest`, 4,000 subjects each: a statement's
        most), a capsule naming them (`promote.capsules.new_capsule`, what `promote
        capsule new` runs: 100,000 `--target` options would pass the argument limit;
        guarded on the head only, as the paths are new)."""
        count = max(10, int(100_000 * self.scale))
        ws = self.workspace("promote-rss")
        root = self.work / "rss-tree"
        root.mkdir()
        names = small_tree(root, count)
        digests: dict[str, str] = {}
        for i in range(0, count, 5000):
            for rec in self.put_json(ws, names[i : i + 5000], root):
                digests[rec["path"]] = rec["digest"]
        checks = [
            self.attest(ws, [root / n for n in names[i : i + SUBJECTS]])
            for i in range(0, count, SUBJECTS)
        ]
        spec = ws / "capsule-spec.json"
        targets = [f"release/{n}={digests[n]}" for n in names]
        spec.write_text(json.dumps({"targets": targets, "attestations": checks}))
        subprocess.run([self.python, "-c", CAPSULE_NEW, str(ws), str(spec)], check=True)
        v = Variant("promote capsule.json", [self.promote, "capsule.json"], cwd=ws)
        elapsed, rss, _, cpu = timed(v)
        peak = rss / MiB
        print(f"  [promote-rss] {elapsed:.3f}s {peak:.1f} MiB", file=sys.stderr, flush=True)
        return {
            "case": "peak-rss",
            "title": f"peak RSS of `promote capsule.json`, {count} new targets of 4 KiB",
            "ours": v.label,
            "peak_rss_mib": round(peak, 1),
            "target_mib": RSS_TARGET_MIB,
            "met": peak <= RSS_TARGET_MIB,
            "seconds": round(elapsed, 3),
            "cpu_s": round(cpu, 3),
            "note": f"{len(checks)} CHECK attestations; one run",
        }

    def big_ledger(self) -> tuple[Path, int]:
        """The ledger the verify, checkpoint, prove and serve cases read: 100,000
        entries at scale 1 (built once, shared; a run takes seconds to minutes an
        entry count, so 1,000,000 would make `make bench` hours long)."""
        return self.ledger_of(max(100, int(100_000 * self.scale)) // 2 * 2)

    def scale_ledger(self) -> tuple[Path, int]:
        """The large ledger of the promote-at-scale case: 1,000,000 entries at scale 1
        (issue 15), 10,000 at `make bench-smoke`'s 0.01."""
        return self.ledger_of(max(100, int(1_000_000 * self.scale)) // 2 * 2)

    def ledger_of(self, n: int) -> tuple[Path, int]:
        ws = self.work / f"ledger-{n}"
        if not ws.exists():
            self.ledger_workspace(ws, n)
        return ws, n

    def ledger_workspace(self, ws: Path, n: int) -> None:
        """A workspace with `n` entries (even: release/x holds object B at the end).

        Entry 1 is a real promotion of release/x = A; entries 2..n, alternating B and A
        under one signed CHECK attestation about both, are built by
        `bench/build_ledger.py` from promote's own functions (input, decision, VSA,
        signed entry; the policy's answer reused per capsule only after checking that
        the ledger position does not change it; entries 2, 3, 4 and every 10,000th
        byte-identical to what `promote.gate.plan` plans on the ledger as written),
        then `promote recover` re-justifies every entry and brings the view up to
        date: a workspace that `promote ledger verify` re-justifies clean. The
        attestation about A and B is in `check-ab.digest`, for later capsules.
        """
        run([self.promote, "init", str(ws)])
        src = self.work / f"{ws.name}-objects"
        src.mkdir()
        (src / "A").write_bytes(b"A" * 4096)
        (src / "B").write_bytes(b"B" * 4096)
        self.stage_release(ws, {"release/x": src / "A"})
        run([self.promote, "capsule.json"], cwd=ws)
        # one signed CHECK attestation covering both A and B, for every later capsule
        check = self.attest(ws, [src / "A", src / "B"])
        (ws / "check-ab.digest").write_text(check)
        argv = [self.python, str(HERE / "build_ledger.py"), str(ws), str(n), str(src / "B")]
        start = time.perf_counter()
        subprocess.run([*argv, check, f"--jobs={CORES}"], check=True)
        run([self.promote, "recover"], cwd=ws)
        print(
            f"  [ledger of {n} entries built and recovered in {time.perf_counter() - start:.0f} s]",
            file=sys.stderr,
            flush=True,
        )

    # 7. appends must not slow down as the ledger grows
    def case_promote_ledger_size(self) -> Case:
        big, n = self.scale_ledger()
        small, _ = self.ledger_of(10)
        digests = {
            name: self.put_json(big, [name], self.work / f"{big.name}-objects")[0]["digest"]
            for name in ("A", "B")
        }

        def variant(label: str, ws: Path) -> Variant:
            v = Variant(label, [self.promote, "capsule.json"], cwd=ws)
            check = (ws / "check-ab.digest").read_text()  # signed by this workspace's checker
            promoted = [0]

            def setup() -> None:  # even runs so far: x holds B, so promote A (then B, ...)
                want = "A" if promoted[0] % 2 == 0 else "B"
                promoted[0] += 1
                target = f"--target=release/x={digests[want]}"
                run(
                    [self.promote, "capsule", "new", target, "--attestation", check, *GUARDED],
                    cwd=ws,
                )

            v.setup = setup
            return v

        return Case(
            "promote-ledger",
            f"promote 1 target at ledger size {n} vs 10",
            variant(f"promote at {n}", big),
            [variant("promote at 10", small)],
            target=1.1,
            note=LEDGER_NOTE,
        )

    def ledger_work_rows(self, case: Case) -> list[dict[str, Any]]:
        """What a promote does that could grow with the ledger, at both sizes: the
        median user+sys CPU of the timed runs, and (one more run each, under strace)
        the file system calls naming the ledger directory and all of them."""
        ours, ref = case.ours, case.refs[0]
        rows = [
            {
                "case": "work",
                "title": f"{case.title}: CPU (user+sys), median",
                "ours": ours.label,
                "ours_value": f"{statistics.median(ours.cpu):.3f} s",
                "reference": ref.label,
                "reference_value": f"{statistics.median(ref.cpu):.3f} s",
                "ratio": round(statistics.median(ours.cpu) / statistics.median(ref.cpu), 3),
                "ours_runs": [round(c, 4) for c in ours.cpu],
                "reference_runs": [round(c, 4) for c in ref.cpu],
            }
        ]
        if shutil.which("strace"):
            counts = {}
            for v in (ours, ref):
                assert v.setup is not None and v.cwd is not None
                v.setup()
                log = self.work / "strace.log"
                argv = ["strace", "-f", "-qq", "-e", "trace=%file", "-o", str(log), *v.argv]
                subprocess.run(argv, cwd=v.cwd, check=True, stdout=subprocess.DEVNULL)
                lines = log.read_text().splitlines()
                ledger = [x for x in lines if "execution/ledger" in x]
                counts[v.label] = (len(ledger), len(lines))
            for i, what in enumerate(("on the ledger", "in all")):
                a, b = counts[ours.label][i], counts[ref.label][i]
                rows.append(
                    {
                        "case": "work",
                        "title": f"{case.title}: file calls {what} (strace, %file)",
                        "ours": ours.label,
                        "ours_value": str(a),
                        "reference": ref.label,
                        "reference_value": str(b),
                        "ratio": round(a / b, 3) if b else None,
                    }
                )
        for r in rows:  # shown now too: a scale-1 run spends minutes removing its data
            shown = f"{r['ours']} {r['ours_value']}  {r['reference']} {r['reference_value']}"
            print(f"  [{r['title']}] {shown}", file=sys.stderr, flush=True)
        return rows

    # 8. the whole ledger re-verified
    def case_ledger_verify(self) -> Case:
        ws, n = self.big_ledger()
        ledger = ws / "execution" / "ledger"
        return Case(
            "ledger-verify",
            f"promote ledger verify, {n} entries",
            Variant("promote ledger verify", [self.promote, "ledger", "verify"], cwd=ws),
            [
                Variant(
                    "b3sum of the entry files (find, xargs)",
                    ["sh", "-c", "find entries -type f -print0 | xargs -0 b3sum >/dev/null"],
                    cwd=ledger,
                )
            ],
            rate=(n, "entries"),
            note="the chain (parse, canonical check, hash, replay) and every entry "
            "re-justified: its runner signature, its capsule's targets, its signed CHECK "
            "attestation verified and covering them, its decision's input rebuilt; the "
            "built entries share two capsules, one attestation and the policy, each has "
            "its own input and decision, as a real ledger's",
        )

    # 8b. a checkpoint (Merkle root) and an inclusion proof over the whole ledger
    def case_ledger_checkpoint(self) -> Case:
        ws, n = self.big_ledger()
        return Case(
            "ledger-checkpoint",
            f"promote ledger checkpoint, {n} entries",
            Variant(
                "promote ledger checkpoint --json",
                [self.promote, "ledger", "checkpoint", "--json"],
                cwd=ws,
            ),
            [self.entries_b3sum(ws)],
            rate=(n, "entries"),
            note="the Merkle tree over every entry's hash: each entry is read and hashed",
        )

    def case_ledger_prove(self) -> Case:
        ws, n = self.big_ledger()
        argv = [self.promote, "ledger", "prove", str(n // 2 + 1), "-o", os.devnull]
        return Case(
            "ledger-prove",
            f"promote ledger prove (entry {n // 2 + 1} of {n})",
            Variant("promote ledger prove", argv, cwd=ws),
            [self.entries_b3sum(ws)],
            note="the proof's path needs the hashes of the subtrees beside it: every entry's",
        )

    def entries_b3sum(self, ws: Path) -> Variant:
        return Variant(
            "b3sum of the entry files (find, xargs)",
            ["sh", "-c", "find entries -type f -print0 | xargs -0 b3sum >/dev/null"],
            cwd=ws / "execution" / "ledger",
        )

    # 8c. a policy engine that hangs: how soon past engine.timeout promote gives up
    def case_engine_timeout(self) -> Case:
        ws = self.workspace("engine-timeout")
        src = self.work / "engine-timeout-objects"
        src.mkdir()
        (src / "A").write_bytes(b"A" * 4096)
        self.stage_release(ws, {"release/x": src / "A"})
        for rego in (ws / "control/policy").glob("*.rego"):
            rego.unlink()
        (ws / "control/policy/promote.rego").write_text(HANGING_REGO)
        cfg = ws / "control/promote/config.json"
        config = json.loads(cfg.read_text())
        config["engine"] = {"kind": "regorus", "timeout": ENGINE_TIMEOUT}
        cfg.write_text(json.dumps(config))
        return Case(
            "engine-timeout",
            f"promote with a policy that never finishes, engine.timeout {ENGINE_TIMEOUT} s",
            Variant(
                "promote (exit 1: timed out)", [self.promote, "capsule.json"], cwd=ws, exit_code=1
            ),
            [Variant(f"sleep {ENGINE_TIMEOUT}", ["sleep", str(ENGINE_TIMEOUT)])],
            note="the ratio is the deadline's overshoot: start-up, the engine's child "
            "process killed at the deadline, the report written; nothing is decided",
        )

    # 9. the web view's timeline over the big ledger: server time, paged
    def serve_rows(self, runs: int) -> list[dict[str, Any]]:
        """`promote serve`'s pages over the ~100,000-entry ledger, timed in the server:
        the application in a child process (Starlette's TestClient, no network), each
        page requested `runs` times after one warm-up, its median in ms."""
        ws, _ = self.big_ledger()
        out = subprocess.run(
            [self.python, "-c", SERVE_PAGES, str(ws), str(max(runs, 5))],
            check=True,
            capture_output=True,
        ).stdout
        timings = json.loads(out)
        n = timings["head"]  # the promote-ledger case, when it ran first, added a few
        rows = []
        for page, title, target in (
            ("/", f"promote serve: timeline page (50 of {n} entries), newest", SERVE_TARGET_MS),
            ("/?from=50", "promote serve: timeline page, oldest entries", SERVE_TARGET_MS),
            ("/entries/HEAD", "promote serve: entry page (the head)", None),
            ("/api/timeline", "promote serve: timeline as JSON", SERVE_TARGET_MS),
        ):
            ms = statistics.median(timings[page])
            rows.append(
                {
                    "case": "serve-ms",
                    "title": title,
                    "ours": f"GET {page}",
                    "server_ms": round(ms, 2),
                    "server_runs_ms": [round(t, 2) for t in timings[page]],
                    "target_ms": target,
                    "met": None if target is None else ms <= target,
                }
            )
        rows.append(
            {
                "case": "serve-ms",
                "title": f"promote serve: path and digest index of {n} entries, built once",
                "ours": "first GET /paths/... or /search",
                "server_ms": round(timings["index_s"] * 1000, 1),
                "server_runs_ms": [round(timings["index_s"] * 1000, 1)],
                "target_ms": None,
                "met": None,
            }
        )
        return rows

    # -- S3 on loopback (SeaweedFS, as the tests start it) -----------------------

    def s3_cases(self, server: Any, only: set[str]) -> list[Case]:
        bucket = "bench"
        env = server.env()
        run_env = {**os.environ, **env}
        subprocess.run(
            [self.cas, "init", f"s3://{bucket}/init"], check=True, env=run_env, capture_output=True
        )
        large = self.work / "s3-large"
        large.mkdir()
        write_random(large / "large.bin", max(MiB, int(256 * MiB * self.scale)))
        tree = self.work / "s3-tree"
        tree.mkdir()
        names = small_tree(tree, max(10, int(1000 * self.scale)))
        counter = iter(range(1_000_000))
        cases = []

        def put_case(key: str, title: str, src: Path, args: list[str]) -> Case:
            ours = Variant("cas put (s3)", [], cwd=src, env=env)
            ref = Variant("boto3 upload, 10 threads", [], env=env)

            def setup_ours() -> None:
                url = f"s3://{bucket}/cas-{next(counter)}"
                subprocess.run(
                    [self.cas, "init", url], check=True, env=run_env, capture_output=True
                )
                ours.argv[:] = [self.cas, "--store", url, "put", *args]

            def setup_ref() -> None:
                ref.argv[:] = [self.python, "-c", BOTO3, "put", bucket, f"ref-{next(counter)}"]
                ref.argv.append(str(src if len(args) > 1 else src / args[0]))

            ours.setup, ref.setup = setup_ours, setup_ref
            return Case(
                key,
                title,
                ours,
                [ref],
                target=1.5 if key == "s3-put-many" else None,  # issue 15: small files
                note="the reference is what `aws s3 cp` does: boto3's transfer manager, "
                "8 MiB parts, 10 requests at a time; cas also hashes and names by digest",
            )

        if "s3-put-large" in only:
            size = (large / "large.bin").stat().st_size
            cases.append(
                put_case(
                    "s3-put-large", f"S3: put one {size // MiB} MiB file", large, ["large.bin"]
                )
            )
        if "s3-put-many" in only:
            cases.append(
                put_case("s3-put-many", f"S3: put {len(names)} files of 4 KiB", tree, names)
            )
        if "s3-fsck" in only:
            mib = ((large / "large.bin").stat().st_size + len(names) * 4096) // MiB
            url = f"s3://{bucket}/fsck"
            subprocess.run([self.cas, "init", url], check=True, env=run_env, capture_output=True)
            for src, args in ((large, ["large.bin"]), (tree, names)):
                subprocess.run(
                    [self.cas, "--store", url, "put", *args],
                    cwd=src,
                    check=True,
                    env=run_env,
                    stdout=subprocess.DEVNULL,
                )
            cases.append(
                Case(
                    "s3-fsck",
                    f"S3: fsck {len(names) + 1} objects, {mib} MiB",
                    Variant("cas fsck (s3)", [self.cas, "--store", url, "fsck"], env=env),
                    [
                        Variant(
                            "boto3 download, 10 threads",
                            [self.python, "-c", BOTO3, "get", bucket, "fsck/blake3"],
                            env=env,
                        )
                    ],
                    note="cas re-hashes every object; the reference only downloads them",
                )
            )
        return cases


#: How the promote-ledger case's ledgers are built and what its runs time (the docs
#: copy it).
LEDGER_NOTE = (
    "Both ledgers are built the same way. Entry 1 is a real `promote` of release/x = A; "
    "entries 2..n alternate release/x between B and A under one signed CHECK "
    "attestation about both, so each is one of two capsules (`promote capsule new` "
    "in-process, guarded on the other object). bench/build_ledger.py makes each entry "
    "from promote's own functions: its input with gate.policy_input, its decision with "
    "decide, its VSA with promote.vsa's build_vsa and sign_vsa, the entry with "
    "build_entry and sign_entry, all signed with the runner key; the entries strictly "
    "in order (each names the hash of the one before), the VSAs (which do not depend "
    "on the chain) ahead in worker processes, one per core, which also store the "
    "objects (put_many: durable, batched syncs) and write the entry files, 2,500 "
    "entries a chunk. The policy is evaluated by the real engine (regorus, a child "
    "process) for the first 3 entries of each capsule and for the same inputs at two "
    "other ledger positions; only when all agree is its answer reused for that "
    "capsule's later entries (decide still builds each decision, with the entry's own "
    "input digest). Entries 2, 3, 4 and every 10,000th are first planned by the "
    "unmodified promote.gate.plan, with the real engine, on the ledger as written up "
    "to the entry before (HEAD written, the checkpoint moved forward with "
    "promote.rollback.advance, as the gate does after a commit): its input, decision, "
    "VSA and entry bytes must equal the built ones, or the build stops. Then sync, "
    "HEAD last, the checkpoint advanced to the head, and `promote recover`, which "
    "re-justifies every entry before it brings the view up to date. Timed: `promote "
    "capsule.json` of a new 1-target capsule guarded on the head, at both sizes, "
    "alternating, three times --runs each"
)

#: Run as `python -c CAPSULE_NEW WORKSPACE SPEC`: write WORKSPACE/capsule.json as
#: `promote capsule new --target ... --attestation ... --base current` would, for the
#: targets and attestations in the JSON file SPEC (too many for a command line).
CAPSULE_NEW = """
import json, sys
from pathlib import Path
from promote.capsules import new_capsule
from promote.verify import open_ledger
from promote.workspace import Workspace

ws = Workspace.load(Path(sys.argv[1]))
spec = json.loads(Path(sys.argv[2]).read_text())
data = new_capsule(ws, open_ledger(ws), spec["targets"], None, base="current",
                   attestations=spec["attestations"])
(ws.root / "capsule.json").write_bytes(data)
"""
#: The most subjects one statement may name (promote.attest.statement.MAX_SUBJECTS).
SUBJECTS = 4000
#: Issue 15: a 100,000-target promote stays within 500 MiB RSS.
RSS_TARGET_MIB = 500

#: Run as `python -c SERVE_PAGES WORKSPACE RUNS`: time `promote serve`'s pages in the
#: server (Starlette's TestClient calls the application in-process), as JSON: page ->
#: milliseconds per run, and index_s, the seconds the path/digest index takes to build.
SERVE_PAGES = """
import json, sys, time
from pathlib import Path
from starlette.testclient import TestClient
from promote.verify import open_ledger
from promote.web.app import create_app
from promote.web.data import Reader
from promote.workspace import Workspace

ws = Workspace.load(Path(sys.argv[1]))
runs = int(sys.argv[2])
reader = Reader(ws, open_ledger)
client = TestClient(create_app(reader))
head = reader.ledger.head().seq
out = {}
out["head"] = head
for label, page in (("/", "/"), ("/?from=50", "/?from=50"),
                    ("/entries/HEAD", f"/entries/{head}"), ("/api/timeline", "/api/timeline")):
    assert client.get(page).status_code == 200, page
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = client.get(page)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, page
    out[label] = times
t = time.perf_counter()
reader.index.update(reader.ledger)
out["index_s"] = time.perf_counter() - t
print(json.dumps(out))
"""

#: A policy that never finishes (10^10 steps): what engine.timeout must cut short.
HANGING_REGO = """package promote
import rego.v1
default allow := false
allow if {
	every i in numbers.range(1, 100000) {
		every j in numbers.range(1, 100000) { i + j > 0 }
	}
}
"""
ENGINE_TIMEOUT = 1

#: The timeline page's server-time target (issue 17): 300 ms with 100,000 entries.
SERVE_TARGET_MS = 300

#: Run as `python -c BOTO3 put BUCKET PREFIX PATH` (a file, or a directory: every file
#: under it) or `python -c BOTO3 get BUCKET PREFIX` (every object under the prefix): a
#: plain boto3 script, as `aws s3 cp [--recursive]` does it (transfer manager, 10 at a
#: time). Endpoint and credentials come from the standard AWS environment, as for cas.
BOTO3 = """
import os, sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from boto3.s3.transfer import TransferConfig

mode, bucket, prefix = sys.argv[1:4]
s3 = boto3.client("s3")
if mode == "put":
    src = sys.argv[4]
    if os.path.isdir(src):
        files = sorted(os.path.relpath(os.path.join(d, f), src)
                       for d, _, fs in os.walk(src) for f in fs)
    else:
        src, files = os.path.dirname(src), [os.path.basename(src)]
    cfg = TransferConfig()
    def up(rel):
        s3.upload_file(os.path.join(src, rel), bucket, prefix + "/" + rel, Config=cfg)
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(up, files))
else:
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix + "/") for o in page.get("Contents", [])]
    def get(key):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        while body.read(1 << 20):
            pass
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(get, keys))
    assert keys
"""


#: The CHECK predicate the checker signs (`promote attest`), as examples/demo.sh does.
CHECK_TYPE = "https://cas-promote.invalid/check-report/v1"
CHECK_PREDICATE = {"status": "pass", "checks": [{"name": "unit-tests", "status": "pass"}]}

#: `promote capsule new` options: guard every target and the head on what they are now.
GUARDED = ["--expect-current", "--base", "current", "-o", "capsule.json"]

PROMOTE_CASES = [
    "promote-targets",
    "promote-rss",
    "promote-ledger",
    "ledger-verify",
    "ledger-checkpoint",
    "ledger-prove",
    "engine-timeout",
]
#: Timed in the server, not as a command: rows of their own.
SERVE_CASES = ["serve-timeline"]
S3_CASES = ["s3-put-large", "s3-put-many", "s3-fsck"]


# -- the table ----------------------------------------------------------------


def rows_of(case: Case) -> list[dict[str, Any]]:
    rows = []
    title = case.title
    if case.rate is not None:
        count, unit = case.rate
        title += f" ({count / case.ours.median():,.0f} {unit}/s)"
    for i, ref in enumerate(case.refs):
        ratio = case.ours.median() / ref.median()
        target = case.target if i == 0 else None
        rows.append(
            {
                "case": case.key,
                "title": title,
                "ours": case.ours.label,
                "ours_s": round(case.ours.median(), 4),
                "ours_runs_s": [round(t, 4) for t in case.ours.times],
                "reference": ref.label,
                "reference_s": round(ref.median(), 4),
                "reference_runs_s": [round(t, 4) for t in ref.times],
                "ratio": round(ratio, 3),
                "target": target,
                "met": None if target is None else ratio <= target,
                "note": case.note if i == 0 else "",
                **(
                    {"ours_per_s": round(case.rate[0] / case.ours.median(), 1)}
                    if case.rate is not None
                    else {}
                ),
            }
        )
    return rows


def rss_row(case: Case) -> dict[str, Any]:
    peak = max(case.ours.peak_rss) / MiB
    return {
        "case": "peak-rss",
        "title": f"peak RSS of `cas put`, {case.title.removeprefix('put ')}",
        "ours": case.ours.label,
        "peak_rss_mib": round(peak, 1),
        "target_mib": 100,
        "met": peak <= 100,
    }


#: What a re-put may write: no data, but refreshing the object's mtime (gc's grace)
#: dirties the block of its inode, which the kernel charges to the process (4 KiB,
#: or 0 when that block was dirty already).
WRITTEN_TARGET = 4096


def written_row(case: Case) -> dict[str, Any]:
    """The most bytes one run of ours wrote (rusage block output = /proc/<pid>/io
    write_bytes): no data, so at most the inode block of the object's mtime."""
    most = max(case.ours.written)
    return {
        "case": "written",
        "title": f"bytes written by `cas put`, {case.title.removeprefix('put ')}",
        "ours": case.ours.label,
        "written_bytes": most,
        "written_runs_bytes": case.ours.written,
        "target_bytes": WRITTEN_TARGET,
        "met": most <= WRITTEN_TARGET,
        "note": "no data; the object's mtime refresh dirties one inode block (or none)",
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ("case", "ours", "s", "reference", "s", "ratio", "target", "met")
    lines = []
    for r in rows:
        if r["case"] == "written":
            lines.append(
                (
                    r["title"],
                    r["ours"],
                    "",
                    f"{r['written_bytes']} bytes",
                    "",
                    "",
                    f"<= {r['target_bytes']} bytes",
                    "yes" if r["met"] else "NO",
                )
            )
        elif r["case"] == "serve-ms":
            target = f"<= {r['target_ms']} ms" if r["target_ms"] is not None else "report"
            met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
            lines.append(
                (
                    r["title"],
                    r["ours"],
                    "",
                    f"{r['server_ms']:.1f} ms (server)",
                    "",
                    "",
                    target,
                    met,
                )
            )
        elif r["case"] == "peak-rss":
            lines.append(
                (
                    r["title"],
                    r["ours"],
                    "",
                    f"{r['peak_rss_mib']:.1f} MiB",
                    "",
                    "",
                    f"<= {r['target_mib']} MiB",
                    "yes" if r["met"] else "NO",
                )
            )
        elif r["case"] == "work":
            lines.append(
                (
                    r["title"],
                    r["ours"],
                    r["ours_value"],
                    r["reference"],
                    r["reference_value"],
                    "" if r["ratio"] is None else f"{r['ratio']:.2f}",
                    "report",
                    "",
                )
            )
        else:
            target = f"<= {r['target']}" if r["target"] is not None else "report"
            met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
            lines.append(
                (
                    r["title"],
                    r["ours"],
                    f"{r['ours_s']:.3f}",
                    r["reference"],
                    f"{r['reference_s']:.3f}",
                    f"{r['ratio']:.2f}",
                    target,
                    met,
                )
            )
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]

    def fmt(cols: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cols, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(head), sep, *(fmt(x) for x in lines)])


# -- main -----------------------------------------------------------------------

CASES = [
    "put-large",
    "reput-large",
    "put-many",
    "put-dedup",
    "fsck",
    "startup",
    *PROMOTE_CASES,
    *SERVE_CASES,
    *S3_CASES,
]


def tool_versions() -> dict[str, str]:
    out = {}
    for name, argv in {
        "git": ["git", "--version"],
        "git-annex": ["git", "annex", "version", "--raw"],
        "b3sum": ["b3sum", "--version"],
        "dd": ["dd", "--version"],
    }.items():
        try:
            text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            out[name] = text.splitlines()[0].strip()
        except (OSError, subprocess.CalledProcessError, IndexError):
            out[name] = "absent"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="data size factor (default 1)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per variant (default 5)")
    ap.add_argument("--only", help=f"comma-separated cases out of: {','.join(CASES)}")
    ap.add_argument("--tmp", type=Path, help="where to build the data (default: $TMPDIR)")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "results.json")
    ap.add_argument(
        "--cas",
        default=str(Path(sys.executable).parent / "cas"),
        help="the cas executable (default: next to this python)",
    )
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(CASES)
    if unknown := only - set(CASES):
        ap.error(f"unknown cases: {', '.join(sorted(unknown))}")
    for tool in ("b3sum", "git", "dd"):
        if not shutil.which(tool):
            ap.error(f"{tool} is not installed (Debian: apt-get install {tool})")

    # An installed wheel comes with its bytecode compiled; an editable install's modules
    # are compiled on first use, and never cached where PYTHONDONTWRITEBYTECODE is set
    # (then every `cas` and `promote` run would pay for compiling them). Compile them
    # once, so that the start-up rows measure what a user's installed copy does.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            str(HERE.parent / "cas"),
            str(HERE.parent / "promote"),
        ],
        check=True,
    )
    work = Path(tempfile.mkdtemp(prefix="cas-bench-", dir=args.tmp))
    b = Bench(args.cas, sys.executable, work, args.scale)
    rows: list[dict[str, Any]] = []
    started = datetime.datetime.now(datetime.UTC)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        if "put-large" in only:
            c = b.case_put_large()
            measure(c, args.runs)
            rows += [*rows_of(c), rss_row(c)]
        if "reput-large" in only:  # the same large.bin as put-large, when both run
            c = b.case_reput_large()
            measure(c, args.runs)
            rows += [*rows_of(c), written_row(c)]
        if only & {"put-large", "reput-large"}:
            rmtree(work)
            work.mkdir()
        if only & {"put-many", "put-dedup"}:
            tree = work / "tree"
            tree.mkdir()
            names = small_tree(tree, max(100, int(10_000 * args.scale)))
            for key, make in (("put-many", b.case_put_many), ("put-dedup", b.case_put_dedup)):
                if key in only:
                    c = make(tree, names)
                    measure(c, args.runs)
                    rows += rows_of(c)
            rmtree(work)
            work.mkdir()
        if "fsck" in only:
            c = b.case_fsck()
            measure(c, args.runs)
            rows += rows_of(c)
            rmtree(work)
            work.mkdir()
        if "startup" in only:
            for c in b.startup_cases():
                measure(c, max(args.runs, 10))
                rows += rows_of(c)
        slots = {
            "promote-targets": b.case_promote_targets,
            "promote-ledger": b.case_promote_ledger_size,
            "ledger-verify": b.case_ledger_verify,
            "ledger-checkpoint": b.case_ledger_checkpoint,
            "ledger-prove": b.case_ledger_prove,
            "engine-timeout": b.case_engine_timeout,
        }
        for key in PROMOTE_CASES:
            if key not in only:
                continue
            if key == "promote-rss":
                rows.append(b.promote_rss_row())
            elif key == "promote-ledger":  # a 10% target on a shared machine: more runs
                c = slots[key]()
                measure(c, 3 * args.runs)
                rows += [*rows_of(c), *b.ledger_work_rows(c)]
            else:
                c = slots[key]()
                measure(c, args.runs)
                rows += rows_of(c)
        if "serve-timeline" in only:
            rows += b.serve_rows(args.runs)
        if only & set(S3_CASES):
            rmtree(work)
            work.mkdir()
            sys.path.insert(0, str(HERE.parent / "tests"))
            from servers import seaweedfs  # the tests' SeaweedFS: loopback, own ports

            with seaweedfs(work / "seaweedfs") as server:
                for c in b.s3_cases(server, only):
                    measure(c, args.runs)
                    rows += rows_of(c)
    finally:
        rmtree(work)

    text = table(rows)
    print(f"{CORES} cores (of {os.cpu_count()} CPUs), load average at the start {load}")
    print(text)
    result = {
        "date": started.isoformat(timespec="seconds"),
        "scale": args.scale,
        "runs": args.runs,
        "machine": {
            "cpus": os.cpu_count(),
            "cores": CORES,
            "load_at_start": load,
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "tools": tool_versions(),
        "rows": rows,
        "table": text,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
