"""Hypothesis strategies shared by the tests that compare a fast schema check with
jsonschema: a valid document mutated one to three times (a member set to an odd value,
dropped or added; an item replaced, dropped or appended)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st


def containers(doc: Any) -> list[Any]:
    """Every dict and list in `doc`, itself included."""
    out, stack = [], [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            out.append(x)
            stack.extend(x.values())
        elif isinstance(x, list):
            out.append(x)
            stack.extend(x)
    return out


def has_float(doc: Any) -> bool:
    """Whether `doc` holds a float anywhere (jsonschema takes 1.0 as an integer)."""
    return any(
        isinstance(x, float)
        for c in containers(doc)
        for x in (c.values() if isinstance(c, dict) else c)
    )


@st.composite
def mutated(
    draw: st.DrawFn,
    docs: st.SearchStrategy[dict[str, Any]],
    keys: Sequence[str],
    odd: Sequence[Any],
) -> Any:
    """A document of `docs`, mutated with member names from `keys` and values from `odd`."""
    doc = copy.deepcopy(draw(docs))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(containers(doc)))
        op = draw(st.sampled_from(["set", "drop", "add"]))
        if isinstance(where, dict):
            if op == "drop" and where:
                del where[draw(st.sampled_from(sorted(where)))]
            else:
                key = draw(st.sampled_from(sorted(where) if op == "set" and where else keys))
                where[key] = copy.deepcopy(draw(st.sampled_from(odd)))
        elif op == "drop" and where:
            where.pop(draw(st.integers(0, len(where) - 1)))
        elif op == "add" or not where:
            where.append(copy.deepcopy(draw(st.sampled_from([*where, *odd]))))
        else:
            where[draw(st.integers(0, len(where) - 1))] = copy.deepcopy(draw(st.sampled_from(odd)))
    return doc
