"""Injected faults (test hooks): dropped tunnels, refused sshd, stalled handshakes, HTTP 500s,
rate limiting (429)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

FaultKind = Literal["drop_tcpproxy", "refuse_sshd", "stall_handshake", "http_500", "rate_limit"]
FAULT_KINDS: tuple[str, ...] = (
    "drop_tcpproxy",
    "refuse_sshd",
    "stall_handshake",
    "http_500",
    "rate_limit",
)


@dataclass
class Fault:
    """One armed fault. `count` None means "every matching request until cleared"."""

    id: int
    kind: str
    session: str | None = None
    after_bytes: int = 0
    path_prefix: str = "/"
    count: int | None = None
    seconds: float = 3600.0
    close_code: int | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FaultTable:
    """Armed faults, consumed by the handlers they target."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> Fault:
        """Arm a fault from a hook body. Raises ValueError for a bad spec."""
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        count = spec.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer")
        after = int(spec.get("after_bytes", 0))
        if after < 0:
            raise ValueError("after_bytes must be >= 0")
        close_code = spec.get("close_code")
        fault = Fault(
            id=next(self._ids),
            kind=str(kind),
            session=spec.get("session"),
            after_bytes=after,
            path_prefix=str(spec.get("path_prefix", "/")),
            count=count,
            seconds=float(spec.get("seconds", 3600.0)),
            close_code=int(close_code) if close_code is not None else None,
        )
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        return [f.as_json() for f in self._faults]

    def take(
        self, kind: str, *, session: str | None = None, path: str | None = None
    ) -> Fault | None:
        """Consume one use of the first armed fault of `kind` that matches."""
        for fault in self._faults:
            if fault.kind != kind:
                continue
            if fault.session is not None and session is not None and fault.session != session:
                continue
            if path is not None and not path.startswith(fault.path_prefix):
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
            return fault
        return None
