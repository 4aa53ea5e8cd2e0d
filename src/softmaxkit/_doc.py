"""Shared docstring pieces: the one helper that puts a "Special values" table into a docstring.

A public function's docstring holds the line ``{special_values}`` where the section goes; its module keeps the
table (the ``====`` block alone, indented as in a docstring, ``{cells}`` allowed) and applies
:func:`special_values` to the function, as a decorator or after the definition. The heading and the blank lines
around the section are written here, once.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["special_values"]

F = TypeVar("F", bound=Callable[..., Any])

MARK = "    {special_values}\n"


def special_values(table: str, /, **cells: str) -> Callable[[F], F]:
    """Decorator: put ``table`` (its ``{name}`` cells filled from ``cells``) under a "Special values" heading
    where the docstring says ``{special_values}``. Raises ``ValueError`` for a docstring without that line."""
    body = textwrap.indent(textwrap.dedent(table.format(**cells) if cells else table).strip("\n"), "    ")
    section = "    Special values\n    --------------\n" + body + "\n\n"

    def put(func: F) -> F:
        doc = func.__doc__
        if doc is None:  # python -OO
            return func
        head, mark, tail = doc.partition(MARK)
        if not mark:
            raise ValueError(f"{func.__qualname__}'s docstring has no {MARK.strip()} line")
        if head.strip() and not head.endswith("\n\n"):
            head += "\n"
        func.__doc__ = head + section + tail.lstrip("\n")
        return func

    return put
