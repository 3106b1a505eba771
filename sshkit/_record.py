"""Small value classes for the relay's start-up path, without `dataclasses`.

`sshkit relay` is a fresh process on every ssh connection; `dataclasses` (with the
`inspect`, `ast`, `dis` and `tokenize` it imports) cost it about 5 ms, and each
decorated class about 0.6 ms more. The classes the relay loads (settings, the
stored login, close and frame records) derive from `Record` instead: the fields
are `_fields` (also the `__slots__`), in declaration order; equality, hashing and
the repr come from them, as a dataclass's do. The rest of sshkit keeps dataclasses.
"""

from __future__ import annotations

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, ClassVar, Self


class Record:
    """Equality, repr and `replace`/`as_dict` over the fields named by `_fields`.

    `_hidden` names fields left out of the repr (secrets). A frozen record
    (`_frozen = True`) refuses attribute assignment after `__init__`, raising
    AttributeError, and is hashable; a mutable one is not hashable.
    """

    __slots__ = ()
    # The fields, in declaration order (`__init__`'s parameters): a subclass sets
    # `_fields = (...)` and `__slots__ = _fields`.
    _fields: ClassVar[tuple[str, ...]] = ()
    _hidden: ClassVar[frozenset[str]] = frozenset()
    _frozen: ClassVar[bool] = True

    def _set(self, **values: object) -> None:
        # For `__init__` only: frozen records refuse `self.x = ...`.
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def as_dict(self) -> dict[str, Any]:
        """The fields and their values, in declaration order (a shallow `dataclasses.asdict`)."""
        return {name: getattr(self, name) for name in self._fields}

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` applied (like `dataclasses.replace`).

        Raises TypeError for a name that is not a field.
        """
        return type(self)(**{**self.as_dict(), **changes})

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        # copy, deepcopy and pickle rebuild through `__init__` (whose parameters are
        # the fields, in order), since frozen records refuse `setattr`.
        return (type(self), self._values())

    def __setattr__(self, name: str, value: object) -> None:
        if self._frozen:
            raise AttributeError(f"cannot assign to field {name!r} of {type(self).__name__}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self._frozen:
            raise AttributeError(f"cannot delete field {name!r} of {type(self).__name__}")
        object.__delattr__(self, name)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        if not self._frozen:
            raise TypeError(f"unhashable type: {type(self).__name__!r}")
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self._fields if name not in self._hidden
        )
        return f"{type(self).__qualname__}({shown})"
