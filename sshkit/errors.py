"""The one error hierarchy of sshkit, and the exit codes the CLI maps it to.

    SshkitError                     every expected failure; carries a one-line message
    ├── UsageError                  bad combination of options or arguments
    ├── ConfigError                 settings missing or invalid (includes NotLoggedInError)
    ├── ApiError                    the server answered with an error (status, title, msg)
    │   ├── AuthError               credentials refused (wrong password or secret, clock skew)
    │   │   ├── OtpRequiredError    the account needs a one-time (TOTP) code
    │   │   └── LoginLimitError     409: the concurrent-login cap is reached
    │   ├── NotFoundError           session, file or folder does not exist
    │   │   └── NotRunningError     the session exists but is not running (starting, ended)
    │   ├── RejectedError           the server refused the request (reserved name, validation)
    │   ├── RateLimitError          429: over the rate limit (never retried)
    │   └── ServerError             5xx, or an answer sshkit cannot understand
    ├── NetworkError                the server could not be reached (DNS, TCP, TLS, timeout)
    ├── UnsafeDownloadError         a download that would be unsafe to write (tar traversal, size)
    ├── KeyFormatError              a key file that is corrupt or of an unsupported kind
    │   └── PassphraseError         a wrong or missing passphrase
    ├── SshConfigError              an ssh_config sshkit refuses to edit
    ├── LocalFileError              a local file problem (exists, not writable, bad mode)
    ├── RelayError                  the tunnel failed or was closed abnormally
    ├── CheckFailedError            `--check` or `doctor` found problems
    ├── UnknownHostError            `hosts remove` names a host sshkit did not write
    └── DeclinedError               the user answered no at a confirmation prompt

Messages are written for users and never contain secrets (keys, passphrases,
secret keys, session ids). The CLI translates these errors in exactly one
place (`sshkit.cli._errors`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (see docs/exit-codes.md)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    CONFIG = 3
    AUTH = 4
    NOT_FOUND = 5
    SERVER = 6
    NETWORK = 7
    KEY_FORMAT = 8
    PASSPHRASE = 9
    SSH_CONFIG = 10
    LOCAL_FILE = 11
    RELAY = 12
    REJECTED = 13
    CHECK_FAILED = 14
    UNSAFE_DOWNLOAD = 15
    UNKNOWN_HOST = 16
    DECLINED = 17
    INTERRUPTED = 130


class SshkitError(Exception):
    """Base of every expected sshkit failure.

    `message` is one line for the user; `hint` optionally says what to do next.
    """

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(SshkitError):
    exit_code = ExitCode.USAGE


class ConfigError(SshkitError):
    exit_code = ExitCode.CONFIG


class NotLoggedInError(ConfigError):
    pass


class ApiError(SshkitError):
    """The server answered with an error.

    `status` is the HTTP status (0 when the failure is not an HTTP status),
    `title`, `msg` and `error_code` (25.8+) come from the server's problem+json
    body when present.
    """

    exit_code = ExitCode.SERVER

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        title: str | None = None,
        msg: str | None = None,
        error_type: str | None = None,
        hint: str | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.title = title
        self.msg = msg
        self.error_type = error_type
        self.error_code = error_code


class AuthError(ApiError):
    exit_code = ExitCode.AUTH


class OtpRequiredError(AuthError):
    """The account needs a one-time (TOTP) code to log in."""


class LoginLimitError(AuthError):
    """The account has as many concurrent logins as it may; `--force` ends the oldest."""


class NotFoundError(ApiError):
    exit_code = ExitCode.NOT_FOUND


class NotRunningError(NotFoundError):
    """The session exists but is not running: still starting, or ended."""


class RateLimitError(ApiError):
    """429: the server's rate limit for the keypair was exceeded. Never retried."""

    exit_code = ExitCode.REJECTED


class RejectedError(ApiError):
    exit_code = ExitCode.REJECTED


class ServerError(ApiError):
    exit_code = ExitCode.SERVER


class NetworkError(SshkitError):
    exit_code = ExitCode.NETWORK


class UnsafeDownloadError(SshkitError):
    exit_code = ExitCode.UNSAFE_DOWNLOAD


class KeyFormatError(SshkitError):
    exit_code = ExitCode.KEY_FORMAT


class PassphraseError(KeyFormatError):
    exit_code = ExitCode.PASSPHRASE


class SshConfigError(SshkitError):
    exit_code = ExitCode.SSH_CONFIG


class LocalFileError(SshkitError):
    exit_code = ExitCode.LOCAL_FILE


class RelayError(SshkitError):
    exit_code = ExitCode.RELAY


class CheckFailedError(SshkitError):
    exit_code = ExitCode.CHECK_FAILED


class UnknownHostError(SshkitError):
    exit_code = ExitCode.UNKNOWN_HOST


class DeclinedError(SshkitError):
    exit_code = ExitCode.DECLINED


# Control characters (C0, DEL, C1) and the bidirectional overrides that can reorder
# what a terminal shows. Server text with ESC/BEL/OSC could retitle the window or write
# the clipboard (OSC 52), so every string from a server is passed through `printable`
# before it is printed or logged.
_UNSAFE_CHARS = frozenset(
    [*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


def printable(text: str) -> str:
    """`text` with every control or bidi-override character shown as an escape (``\\x1b``).

    Tabs and line breaks are escaped too: the result is one line, safe for any terminal
    or log. Never raises.
    """
    if not any(ord(c) in _UNSAFE_CHARS for c in text):
        return text
    out: list[str] = []
    for c in text:
        code = ord(c)
        if code not in _UNSAFE_CHARS:
            out.append(c)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)
