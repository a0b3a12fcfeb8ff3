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
    times: list[float] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)  # bytes, per run

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


def timed(v: Variant) -> tuple[float, int]:
    """Run `v` once; its wall-clock seconds and peak RSS in bytes."""
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
    if p.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(v.argv[:4])} ... failed with exit {p.returncode}:\n"
            + err.decode(errors="replace")[-2000:]
        )
    return elapsed, usage.ru_maxrss * 1024


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
            t, rss = timed(v)
            v.times.append(t)
            v.peak_rss.append(rss)
        shown = "  ".join(f"{v.label} {v.times[-1]:.3f}s" for v in variants if v in ran)
        print(f"  [{case.key} {r + 1}/{runs}] {shown}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], cwd: Path | None = None) -> None:
    """An untimed helper command (data set-up); fail loudly."""
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def rmtree(path: Path) -> None:
    """`rm -rf`, also through the read-only directories git-annex leaves."""
    if not path.exists():
        return
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
            Variant("cas put", [*self.put_args(store), *names], cwd=tree),
            [Variant("b3sum", ["b3sum", *names], cwd=tree)],
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
            Variant("cas fsck", [self.cas, "--store", str(store), "fsck"]),
            [Variant("b3sum (default threads)", ["b3sum", *files], cwd=objects)],
            target=1.3,
        )

    # 5. start-up
    def case_startup(self) -> Case:
        return Case(
            "startup",
            "CLI start-up",
            Variant("cas --help", [self.cas, "--help"]),
            [Variant("python3 -c pass", [self.python, "-c", "pass"])],
            note="report only; the interpreter is the same one `cas` runs on",
        )

    # -- promote: slots, filled once `promote` exists ------------------------
    #
    # Each returns None until `promote` has the commands it needs; `main` then prints
    # the row as pending. Fill them in here, with the same Case/Variant shape.

    def case_promote_targets(self) -> Case | None:
        """SLOT (promote): one promotion of 1,000 changed targets vs `git commit` of the
        same 1,000 changed paths in a repo. Target ratio <= 1.0."""
        return None

    def case_promote_ledger_size(self) -> Case | None:
        """SLOT (promote): one promotion at ledger size 100,000 vs the same promotion at
        ledger size 10 (appends must be O(1)). Target ratio <= 1.1."""
        return None

    def case_ledger_verify(self) -> Case | None:
        """SLOT (promote): `promote ledger verify` of 100,000 entries vs `b3sum` of the
        ledger files. Report entries/s."""
        return None


PENDING = [
    ("promote-targets", "promote 1,000 targets vs git commit", 1.0),
    ("promote-ledger", "promote at ledger 100,000 vs 10", 1.1),
    ("ledger-verify", "promote ledger verify, 100,000 entries", None),
]


# -- the table ----------------------------------------------------------------


def rows_of(case: Case) -> list[dict[str, Any]]:
    rows = []
    for i, ref in enumerate(case.refs):
        ratio = case.ours.median() / ref.median()
        target = case.target if i == 0 else None
        rows.append(
            {
                "case": case.key,
                "title": case.title,
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


def table(rows: list[dict[str, Any]]) -> str:
    head = ("case", "ours", "s", "reference", "s", "ratio", "target", "met")
    lines = []
    for r in rows:
        if r["case"] == "peak-rss":
            lines.append(
                (
                    r["title"],
                    r["ours"],
                    "",
                    f"{r['peak_rss_mib']:.1f} MiB",
                    "",
                    "",
                    "<= 100 MiB",
                    "yes" if r["met"] else "NO",
                )
            )
        elif r.get("pending"):
            target = f"<= {r['target']}" if r["target"] is not None else "report"
            lines.append(
                (r["title"], "promote", "", "(pending: promote not built)", "", "", target, "")
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

CASES = ["put-large", "put-many", "put-dedup", "fsck", "startup", *(k for k, _, _ in PENDING)]


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

    work = Path(tempfile.mkdtemp(prefix="cas-bench-", dir=args.tmp))
    b = Bench(args.cas, sys.executable, work, args.scale)
    rows: list[dict[str, Any]] = []
    started = datetime.datetime.now(datetime.UTC)
    try:
        if "put-large" in only:
            c = b.case_put_large()
            measure(c, args.runs)
            rows += [*rows_of(c), rss_row(c)]
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
            c = b.case_startup()
            measure(c, max(args.runs, 10))
            rows += rows_of(c)
        slots = {
            "promote-targets": b.case_promote_targets,
            "promote-ledger": b.case_promote_ledger_size,
            "ledger-verify": b.case_ledger_verify,
        }
        for key, title, target in PENDING:
            if key not in only:
                continue
            c2 = slots[key]()
            if c2 is None:
                rows.append({"case": key, "title": title, "pending": True, "target": target})
            else:
                measure(c2, args.runs)
                rows += rows_of(c2)
    finally:
        rmtree(work)

    text = table(rows)
    print(text)
    result = {
        "date": started.isoformat(timespec="seconds"),
        "scale": args.scale,
        "runs": args.runs,
        "machine": {
            "cpus": os.cpu_count(),
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
