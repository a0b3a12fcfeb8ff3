"""After each test of tests/gate: every policy input the gate stored, in any workspace
under the test's tmp_path, matches control/promote/policy_input.schema.json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cas.errors import CasError

#: How a stored policy input starts (canonical JSON: sorted keys, no spaces).
_MARK = b'"schema":"promote-policy-input/v2"'


def stored_policy_inputs(root: Path) -> Iterator[tuple[str, bytes]]:
    """(digest, bytes) of every policy input in the stores of the workspaces under
    `root`; a workspace that does not load (a test broke it on purpose) is passed over."""
    from promote.workspace import Workspace

    for marker in sorted(root.rglob(".promote")):
        try:
            store = Workspace.load(marker.parent).store
            digests = list(store.iterate())
        except (CasError, OSError):
            continue
        for d in digests:
            try:
                if store.size(d) > 64 << 20:
                    continue
                data = store.read_bytes(d)
            except (CasError, OSError):  # corrupted or removed on purpose
                continue
            if data.startswith(b"{") and _MARK in data:
                yield str(d), data


@pytest.fixture(autouse=True)
def every_stored_policy_input_matches_its_schema(tmp_path: Path) -> Iterator[None]:
    yield
    from promote.canonical import load_json
    from promote.model import check_policy_input

    for digest, data in stored_policy_inputs(tmp_path):
        check_policy_input(load_json(data, digest), f"policy input {digest}")
