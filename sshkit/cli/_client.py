"""The one API client of a command: opened once, passed to the services, closed on the way out.

Commands that always talk to the server write `with open_client(profile) as client:`;
commands that need it only sometimes (an export whose key is already there) take a
`LazyClient`, which opens the client on first use and closes it, if opened, on exit.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sshkit.api.client import BackendClient


def open_client(profile: str | None) -> BackendClient:
    """A client for the profile's stored login; close it (use `with`).

    Raises NotLoggedInError/ConfigError when there is no usable login.
    """
    from sshkit.api.client import BackendClient
    from sshkit.settings import load_connection

    return BackendClient.from_connection(load_connection(profile))


class LazyClient:
    """`open_client(profile)` on the first call, the same client after; closed on exit."""

    def __init__(self, profile: str | None) -> None:
        self._profile = profile
        self._client: BackendClient | None = None

    def __call__(self) -> BackendClient:
        """The command's client. Raises NotLoggedInError/ConfigError on the first call."""
        if self._client is None:
            self._client = open_client(self._profile)
        return self._client

    def __enter__(self) -> LazyClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
