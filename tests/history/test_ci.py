"""The gate where changes are reviewed: `verify-tree`, `ledger verify-chain`, the CI
workflow of `promote init --ci github`, and the `promote-verify` pre-commit hook run by
the real `pre-commit` tool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import BIN, Flow, clean_env, script

REPO = Path(__file__).resolve().parents[2]
GIT_ID = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def git(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=clean_env({**GIT_ID, **(env or {})}),
    )


def git_ok(cwd: Path, *args: str) -> str:
    r = git(cwd, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def edit(path: Path, data: bytes) -> None:
    """An ad-hoc change to a read-only view file, as someone in a hurry would make."""
    if path.exists():
        os.chmod(path, 0o644)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


GITIGNORE = ".cas/\n.promote/\nexecution/ledger/.lock\nexecution/promote/\n*.json.src\n"


@pytest.fixture
def repo(tmp_path: Path) -> Flow:
    """A git repository whose root is a copy-mode workspace with one promotion committed."""
    flow = Flow.init(tmp_path / "repo", "--mode", "copy")
    git_ok(flow.root, "init", "-q")
    (flow.root / ".gitignore").write_text(GITIGNORE)
    assert flow.release({"release/app.txt": b"app 1\n", "release/lib/x.so": b"x1"}).returncode == 0
    (flow.root / "capsule.json").unlink()
    git_ok(flow.root, "add", "-A")
    git_ok(flow.root, "commit", "-qm", "release 1")
    return flow


def verify_tree(flow: Flow, *args: str) -> subprocess.CompletedProcess[bytes]:
    return flow.run("promote", "verify-tree", *args)


# -- verify-tree -----------------------------------------------------------------------


def test_verify_tree_clean_without_a_store(repo: Flow) -> None:
    shutil.move(repo.root / ".cas", repo.root.parent / "elsewhere")
    (repo.root / "control/promote/config.json").write_text(
        json.dumps(
            {"schema": "promote-config/v1", "store": "/nonexistent/store", "view": {"mode": "copy"}}
        )
    )
    r = verify_tree(repo)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"verify-tree: clean\n"
    assert repo.run("promote", "verify").returncode != 0  # the full gate needs the store


@pytest.mark.parametrize(
    ("change", "kind", "where"),
    [
        (
            lambda root: edit(root / "release/app.txt", b"hot fix\n"),
            "view-modified",
            "release/app.txt",
        ),
        (lambda root: edit(root / "release/extra.txt", b"x"), "unpromoted", "release/extra.txt"),
        (lambda root: (root / "release/lib/x.so").unlink(), "view-missing", "release/lib/x.so"),
    ],
    ids=["modified", "added", "deleted"],
)
def test_verify_tree_catches_a_direct_change(repo: Flow, change, kind: str, where: str) -> None:  # type: ignore[no-untyped-def]
    change(repo.root)
    r = verify_tree(repo, "--json")
    assert r.returncode == 3
    problems = json.loads(r.stdout)["problems"]
    assert [(p["kind"], p["location"]) for p in problems] == [(kind, where)]


def test_verify_tree_catches_a_rewritten_ledger(repo: Flow) -> None:
    p = repo.root / "execution/ledger/entries/000000000001.json"
    os.chmod(p, 0o644)
    doc = json.loads(p.read_bytes())
    doc["changes"][0]["to"]["size"] += 1
    from promote.canonical import canonical

    p.write_bytes(canonical(doc))
    r = verify_tree(repo)
    assert r.returncode == 3
    assert b"ledger" in r.stdout


def test_verify_tree_symlink_mode(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    assert verify_tree(flow).returncode == 0
    (flow.root / "release").unlink()
    edit(flow.root / "release/a", b"1")  # the same bytes, but not through promote
    r = verify_tree(flow)
    assert r.returncode == 3
    assert b"unpromoted: release: files in a symlink-mode view" in r.stdout


def test_verify_tree_with_a_postgresql_ledger(tmp_path: Path, pg_url: str) -> None:
    flow = Flow.init(tmp_path / "ws", "--mode", "copy", env={"PROMOTE_LEDGER": pg_url})
    assert flow.release({"release/a": b"1"}).returncode == 0
    assert verify_tree(flow).returncode == 0
    edit(flow.root / "release/a", b"2")
    r = verify_tree(flow)
    assert r.returncode == 3
    assert b"view-modified" in r.stdout


# -- ledger verify-chain ---------------------------------------------------------------


def test_verify_chain_of_this_repository(tmp_path: Path) -> None:
    """The self-gate of .ci/run: the committed execution/ledger, then with its objects."""
    r = subprocess.run(
        [script("promote"), "ledger", "verify-chain", REPO / "execution/ledger"],
        capture_output=True,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ledger verify-chain: clean\n"
    env = clean_env({"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    # the example's own keys, so that the demo's store holds the example's attestations
    subprocess.run(
        ["bash", str(REPO / "examples/example-keys.sh"), str(tmp_path / "keys")],
        check=True,
        env=env,
    )
    subprocess.run(
        ["bash", str(REPO / "examples/demo.sh"), str(tmp_path / "ws")],
        check=True,
        capture_output=True,
        env={**env, "DEMO_KEYS": str(tmp_path / "keys")},
    )
    r = subprocess.run(
        [
            script("promote"),
            "ledger",
            "verify-chain",
            REPO / "execution/ledger",
            "--store",
            tmp_path / "ws/.cas",
        ],
        capture_output=True,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    empty = tmp_path / "empty"
    assert subprocess.run([script("cas"), "init", empty], capture_output=True).returncode == 0
    r = subprocess.run(
        [
            script("promote"),
            "ledger",
            "verify-chain",
            REPO / "execution/ledger",
            "--store",
            empty,
            "--json",
        ],
        capture_output=True,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert r.returncode == 3
    found = json.loads(r.stdout)["problems"]
    assert {p["kind"] for p in found} == {"missing", "unjustified"}
    # without its objects no entry re-justifies: each is named
    entries = len(list((REPO / "execution/ledger/entries").iterdir()))
    assert sorted(p["location"] for p in found if p["kind"] == "unjustified") == [
        f"ledger entry {n}" for n in range(1, entries + 1)
    ]


def copy_ledger(tmp_path: Path) -> Path:
    dest = tmp_path / "ledger"
    shutil.copytree(REPO / "execution/ledger", dest)
    for p in dest.rglob("*.json"):
        os.chmod(p, 0o644)
    return dest


def chain(tmp_path: Path, ledger: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [script("promote"), "ledger", "verify-chain", ledger, "--json"],
        capture_output=True,
        cwd=tmp_path,
        env=clean_env(),
    )


@pytest.mark.parametrize("how", ["swap", "drop-first", "head", "edit"])
def test_verify_chain_refuses_a_tampered_ledger(tmp_path: Path, how: str) -> None:
    ledger = copy_ledger(tmp_path)
    one, two = (ledger / "entries" / f"{n:012d}.json" for n in (1, 2))
    if how == "swap":
        a, b = one.read_bytes(), two.read_bytes()
        one.write_bytes(b)
        two.write_bytes(a)
    elif how == "drop-first":
        one.unlink()
    elif how == "head":
        doc = json.loads((ledger / "HEAD").read_bytes())
        doc["entry"] = "blake3:" + "0" * 64
        (ledger / "HEAD").write_text(json.dumps(doc))
    else:
        one.write_bytes(
            one.read_bytes().replace(b'"v1.0.0"', b'"v6.6.6"').replace(b"app.txt", b"app.exe")
        )
    r = chain(tmp_path, ledger)
    assert r.returncode == 3, r.stdout
    assert json.loads(r.stdout)["ok"] is False


def test_verify_chain_usage(tmp_path: Path) -> None:
    r = chain(tmp_path, tmp_path / "nope")  # with --json: the error is JSON on stdout
    assert r.returncode == 2 and r.stderr == b""
    assert json.loads(r.stdout)["error"]["message"].endswith("nope: no such ledger directory")


# -- promote init --ci github ------------------------------------------------------------


def workflow_of(root: Path) -> dict:  # type: ignore[type-arg]
    doc = yaml.safe_load((root / ".github/workflows/promote-gate.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def gate_steps(doc: dict) -> list[str]:  # type: ignore[type-arg]
    steps = doc["jobs"]["gate"]["steps"]
    return [s["run"] for s in steps if "run" in s and "pip install" not in s["run"]]


def test_init_ci_github_writes_the_workflow(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git_ok(root, "init", "-q")
    r = Flow.init(root, "--mode", "copy", "--ci", "github")
    path = root / ".github/workflows/promote-gate.yml"
    first = path.read_bytes()
    doc = workflow_of(root)
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    assert on == {"pull_request": None}
    steps = doc["jobs"]["gate"]["steps"]
    assert any("pip install" in s.get("run", "") for s in steps)
    assert gate_steps(doc) == ["promote verify-tree", "promote ledger verify", "promote verify"]
    assert doc["permissions"] == {"contents": "read"}
    # a second init keeps the file
    again = r.ok("promote", "init", "--ci", "github")
    assert b"kept" in again.stdout
    assert path.read_bytes() == first
    # deterministic: another workspace gets the same bytes
    other = tmp_path / "other"
    other.mkdir()
    git_ok(other, "init", "-q")
    Flow.init(other, "--mode", "copy", "--ci", "github")
    assert (other / ".github/workflows/promote-gate.yml").read_bytes() == first


def test_init_ci_in_a_subdirectory_and_symlink_mode(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git_ok(root, "init", "-q")
    Flow.init(root / "deploy/ws", "--ci", "github")
    doc = workflow_of(root)
    assert doc["jobs"]["gate"]["defaults"] == {"run": {"working-directory": "deploy/ws"}}
    assert gate_steps(doc) == ["promote verify-tree", "promote ledger verify"]


def test_the_workflow_steps_gate_a_pull_request(repo: Flow, tmp_path: Path) -> None:
    """Run the workflow's own steps on a fresh clone, as the CI runner would.

    The store is the one the committed config names, reachable from the runner (here
    an absolute directory, as an s3:// store would be): no CAS_STORE, which inside a
    workspace may only repeat the config."""
    config = repo.root / "control/promote/config.json"
    doc = json.loads(config.read_bytes())
    doc["store"] = str(repo.root / ".cas")
    config.write_text(json.dumps(doc, indent=2) + "\n")
    repo.ok("promote", "init", "--ci", "github")
    git_ok(repo.root, "add", "-A")
    git_ok(repo.root, "commit", "-qm", "ci")
    steps = gate_steps(workflow_of(repo.root))
    assert "CAS_STORE" not in workflow_of(repo.root)["jobs"]["gate"]["env"]
    clone = tmp_path / "clone"
    git_ok(tmp_path, "clone", "-q", str(repo.root), str(clone))
    assert not (clone / ".cas").exists()
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}

    def run_steps() -> list[int]:
        return [
            subprocess.run(
                ["bash", "-ec", s], cwd=clone, capture_output=True, env=clean_env(env)
            ).returncode
            for s in steps
        ]

    assert run_steps() == [0, 0, 0]
    edit(clone / "release/app.txt", b"hot fix\n")
    git_ok(clone, "commit", "-qam", "hot fix")
    assert run_steps() == [3, 0, 3]


# -- the pre-commit hook, with the real pre-commit -----------------------------------------


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, Path]]:
    """This package as a pre-commit hook repository (a git repo of the current sources),
    and a pre-commit home whose hook environment is installed once for the session."""
    src = tmp_path_factory.mktemp("hook-repo")
    for name in ("cas", "promote"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy(REPO / name, src / name)
    git_ok(src, "init", "-q")
    git_ok(src, "add", "-A")
    git_ok(src, "commit", "-qm", "hooks")
    rev = git_ok(src, "rev-parse", "HEAD").strip()
    home = tmp_path_factory.mktemp("pre-commit-home")
    yield src, rev, home


def precommit_config(hook: tuple[Path, str, Path]) -> str:
    src, rev, _ = hook
    return f"repos:\n  - repo: {src}\n    rev: {rev}\n    hooks:\n      - id: promote-verify\n"


def commit(root: Path, hook: tuple[Path, str, Path], msg: str) -> subprocess.CompletedProcess[str]:
    """`git commit` with the hook installed, as a developer runs it; output in stdout."""
    return subprocess.run(
        ["git", "commit", "-qm", msg],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env({**GIT_ID, "PRE_COMMIT_HOME": str(hook[2])}),
    )


def test_manifest_is_valid() -> None:
    r = subprocess.run(
        [script("pre-commit"), "validate-manifest", REPO / ".pre-commit-hooks.yaml"],
        capture_output=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "promote-verify" and hook["language"] == "python"


def test_precommit_refuses_direct_changes_and_passes_promotions(
    repo: Flow, hook_repo: tuple[Path, str, Path]
) -> None:
    root = repo.root
    (root / ".pre-commit-config.yaml").write_text(precommit_config(hook_repo))
    r = subprocess.run(
        [script("pre-commit"), "install"],
        cwd=root,
        capture_output=True,
        env=clean_env({"PRE_COMMIT_HOME": str(hook_repo[2])}),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    git_ok(root, "add", ".pre-commit-config.yaml")
    r = commit(root, hook_repo, "use the hook")
    assert r.returncode == 0, r.stdout + r.stderr

    # a direct change to an authoritative file: refused
    edit(root / "release/app.txt", b"hot fix\n")
    git_ok(root, "add", "release/app.txt")
    r = commit(root, hook_repo, "hot fix")
    assert r.returncode != 0
    assert "view-modified" in r.stdout and "release/app.txt" in r.stdout
    # ... also when the work tree is put back but the index still holds the change
    edit(root / "release/app.txt", b"app 1\n")
    assert commit(root, hook_repo, "hot fix").returncode != 0
    git_ok(root, "reset", "-q", "release/app.txt")

    # a file dropped under the allow-list, and a deletion: refused
    edit(root / "release/dropped.txt", b"x")
    git_ok(root, "add", "release/dropped.txt")
    r = commit(root, hook_repo, "drop")
    assert r.returncode != 0 and "unpromoted" in r.stdout
    git_ok(root, "rm", "-q", "--cached", "release/dropped.txt")
    (root / "release/dropped.txt").unlink()
    git_ok(root, "rm", "-q", "release/lib/x.so")
    r = commit(root, hook_repo, "delete")
    assert r.returncode != 0 and "view-missing" in r.stdout
    git_ok(root, "reset", "-q", "HEAD", "--", "release/lib/x.so")
    git_ok(root, "checkout", "--", "release/lib/x.so")

    # a promotion passes: the new file and the ledger entry that puts it there
    assert repo.release({"release/app.txt": b"app 2\n"}, "--expect-current").returncode == 0
    (root / "capsule.json").unlink()
    git_ok(root, "add", "-A")
    r = commit(root, hook_repo, "release 2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "promote verify" in r.stdout and "Passed" in r.stdout
    assert git_ok(root, "show", "HEAD:release/app.txt") == "app 2\n"

    # the file without its ledger entry is refused
    assert repo.release({"release/app.txt": b"app 3\n"}, "--expect-current").returncode == 0
    (root / "capsule.json").unlink()
    git_ok(root, "add", "release")
    r = commit(root, hook_repo, "release 3 without its ledger entry")
    assert r.returncode != 0 and "view-modified" in r.stdout
