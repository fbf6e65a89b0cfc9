"""Per-instance attribute patches that can be undone exactly.

Methods are overridden by setting an attribute on one object (its `__dict__` shadows the class),
so other instances of the same class are untouched and removal restores the original lookup.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


class InstancePatch:
    """Records every attribute it sets so that `undo` puts each object back as it was."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def set(self, obj: Any, name: str, value: Any) -> None:
        self._saved.append((obj, name, obj.__dict__.get(name, _MISSING)))
        object.__setattr__(obj, name, value)

    def undo(self) -> None:
        for obj, name, previous in reversed(self._saved):
            if previous is _MISSING:
                obj.__dict__.pop(name, None)
            else:
                object.__setattr__(obj, name, previous)
        self._saved.clear()
