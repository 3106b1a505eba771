"""Backend.AI keypair request signing (HMAC-SHA256, protocol spec §3). Pure; stdlib only.

The relay imports this on every ssh connection, so it must stay free of
third-party imports. Nothing here reads the clock: the caller passes `date`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

# `datetime` costs the relay about 1.5 ms per ssh connection: it passes the POSIX
# time instead, and `datetime` is imported only for datetime arguments. mypy reads
# this name as it reads `typing.TYPE_CHECKING`.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from datetime import datetime

# Servers since API v4.20181215 never hash the real body: the hash of b"" is always signed.
EMPTY_BODY_HASH = hashlib.sha256(b"").hexdigest()

# The content types the signer uses when the request has no JSON body.
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_EMPTY = "text/plain"
CONTENT_TYPE_WEBSOCKET = "application/octet-stream"


def format_date(date: datetime | float) -> str:
    """The `Date` header value: ISO 8601 with the UTC offset (not RFC 1123).

    A naive datetime is taken as UTC, as the server does; a number is POSIX time in
    seconds, written in UTC to the microsecond, as `datetime.isoformat` would.
    """
    return _date_parts(date)[0]


def _date_parts(date: datetime | float) -> tuple[str, str]:
    """(the `Date` header, its calendar day as YYYYMMDD, from which the key derives)."""
    if isinstance(date, int | float):
        whole, micro = divmod(round(date * 1_000_000), 1_000_000)
        utc = time.gmtime(whole)
        fraction = f".{micro:06d}" if micro else ""
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", utc) + fraction + "+00:00",
            time.strftime("%Y%m%d", utc),
        )
    if date.tzinfo is None:
        from datetime import UTC

        date = date.replace(tzinfo=UTC)
    return date.isoformat(), date.strftime("%Y%m%d")


def string_to_sign(
    method: str,
    rel_url: str,
    *,
    date_header: str,
    hostname: str,
    content_type: str,
    api_version: str,
) -> str:
    """The seven newline-joined fields of spec §3.1 step 5."""
    return "\n".join(
        (
            method.upper(),
            rel_url,
            date_header,
            f"host:{hostname}",
            f"content-type:{bare_content_type(content_type)}",
            f"x-backendai-version:{api_version}",
            EMPTY_BODY_HASH,
        )
    )


def bare_content_type(content_type: str) -> str:
    """The lower-cased MIME type without parameters, as the server recomputes it."""
    return content_type.split(";", 1)[0].strip().lower()


def signature(
    method: str,
    rel_url: str,
    *,
    date: datetime | float,
    hostname: str,
    content_type: str,
    api_version: str,
    secret_key: str,
) -> str:
    """The hex HMAC-SHA256 signature of a request (spec §3.1 step 6).

    `date` as in `format_date`.
    """
    header, day = _date_parts(date)
    return _signature(method, rel_url, header, day, hostname, content_type, api_version, secret_key)


def _signature(
    method: str,
    rel_url: str,
    date_header: str,
    day: str,
    hostname: str,
    content_type: str,
    api_version: str,
    secret_key: str,
) -> str:
    """`signature` for a date already written as its header and its day."""
    k1 = hmac.new(secret_key.encode(), day.encode(), hashlib.sha256).digest()
    k2 = hmac.new(k1, hostname.encode(), hashlib.sha256).digest()
    text = string_to_sign(
        method,
        rel_url,
        date_header=date_header,
        hostname=hostname,
        content_type=content_type,
        api_version=api_version,
    )
    return hmac.new(k2, text.encode(), hashlib.sha256).hexdigest()


def sign_headers(
    method: str,
    rel_url: str,
    *,
    date: datetime | float,
    hostname: str,
    content_type: str,
    api_version: str,
    access_key: str,
    secret_key: str,
) -> dict[str, str]:
    """Return the `Date`, `X-BackendAI-Version` and `Authorization` headers for a request.

    `rel_url` is the percent-encoded path plus `?query` exactly as it goes on
    the request line (including any path prefix of the endpoint); `hostname`
    is what the `Host` header will carry (`host[:port]`, without a default
    port). `content_type` is what gets signed: `application/json` with a JSON
    body, `text/plain` without one, `application/octet-stream` for websockets.
    `date` as in `format_date`. Raises nothing.
    """
    header, day = _date_parts(date)
    sig = _signature(method, rel_url, header, day, hostname, content_type, api_version, secret_key)
    return {
        "Date": header,
        "X-BackendAI-Version": api_version,
        "Authorization": f"BackendAI signMethod=HMAC-SHA256, credential={access_key}:{sig}",
    }
