"""Walk a Dash component tree (unit tests of layouts without a browser)."""
from __future__ import annotations

from typing import Any, Iterator


def walk(node: Any) -> Iterator[Any]:
    if node is None or isinstance(node, (str, int, float)):
        return
    if isinstance(node, (list, tuple)):
        for n in node:
            yield from walk(n)
        return
    yield node
    yield from walk(getattr(node, "children", None))


def by_id(tree: Any, id_: Any) -> Any:
    for n in walk(tree):
        if getattr(n, "id", None) == id_:
            return n
    raise KeyError(id_)


def text(tree: Any) -> str:
    """All text in a tree, space-joined."""
    out: list[str] = []

    def rec(node: Any) -> None:
        if node is None:
            return
        if isinstance(node, (str, int, float)):
            out.append(str(node))
        elif isinstance(node, (list, tuple)):
            for n in node:
                rec(n)
        else:
            rec(getattr(node, "children", None))

    rec(tree)
    return " ".join(out)
