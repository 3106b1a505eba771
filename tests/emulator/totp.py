"""RFC 6238 time-based one-time passwords (SHA-1, 6 digits, 30 s), as the TOTP plugin checks them.

Written from the RFC (4226 §5.3 dynamic truncation), independent of sshkit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct

STEP = 30
DIGITS = 6


def new_secret() -> str:
    """A random 160-bit secret, base32 without padding (what authenticator apps take)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def totp(secret: str, at: float) -> str:
    """The code for Unix time `at`."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    counter = struct.pack(">Q", int(at // STEP))
    digest = hmac.new(key, counter, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def totp_matches(secret: str, code: str, now: float) -> bool:
    """True when `code` is the code of the current step or one step either side."""
    return any(
        hmac.compare_digest(totp(secret, now + drift * STEP), code.strip()) for drift in (-1, 0, 1)
    )
