"""Per-instance attribute patches that can be undone exactly.

Methods are overridden by setting an attribute on one object (its `__dict__` shadows the class),
so other instances of the same class are untouched and removal restores the original lookup.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


class InstancePatch:
    """Records every attribute it sets so that `undo` puts each object back as it was.

    `suspend` takes the attributes off the same way but keeps the record, so that `resume` can put
    them back (a replacement that fails restores what it replaced); `stock_state` is an object's
    state as it was before this patch touched it (what copies and pickles of that object hold)."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any, Any]] = []  # (object, name, previous value, value set)

    def set(self, obj: Any, name: str, value: Any) -> None:
        self._saved.append((obj, name, obj.__dict__.get(name, _MISSING), value))
        object.__setattr__(obj, name, value)

    def undo(self) -> None:
        self.suspend()
        self._saved.clear()

    def suspend(self) -> None:
        """Take every attribute off (as `undo`), keeping the record for `resume`."""
        for obj, name, previous, _ in reversed(self._saved):
            if previous is _MISSING:
                obj.__dict__.pop(name, None)
            else:
                object.__setattr__(obj, name, previous)

    def resume(self) -> None:
        """Put back every attribute `suspend` took off, in the order they were first set."""
        for obj, name, _, value in self._saved:
            object.__setattr__(obj, name, value)

    def objects(self) -> list[Any]:
        """The objects this patch sets attributes on, each once, in the order first patched."""
        seen: dict[int, Any] = {}
        for obj, *_ in self._saved:
            seen.setdefault(id(obj), obj)
        return list(seen.values())

    def stock_state(self, obj: Any) -> dict[str, Any]:
        """`obj`'s state (its `__getstate__`, or a copy of its `__dict__`) with this patch's attributes
        taken out: the state it had before it was patched. The object itself is not changed."""
        getstate = getattr(type(obj), "__getstate__", None)
        state = getstate(obj) if getstate is not None else None
        state = dict(state if isinstance(state, dict) else obj.__dict__)
        for patched, name, previous, _ in reversed(self._saved):
            if patched is obj:
                if previous is _MISSING:
                    state.pop(name, None)
                else:
                    state[name] = previous
        return state
