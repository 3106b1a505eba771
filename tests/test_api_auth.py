"""Request signing against the known-answer vectors of protocol spec §3.4."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshkit.api.auth import (
    EMPTY_BODY_HASH,
    format_date,
    sign_headers,
    signature,
    string_to_sign,
)

ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DATE = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

VECTORS = [
    (
        "GET",
        "127.0.0.1:8090",
        "/session/mysess/download",
        "application/json",
        "v7.20230615",
        "0d037886d62d0debcc9cd927f459a3d2327963ea9bd135c9b4ad89e8c9c5e7bd",
    ),
    (
        "GET",
        "127.0.0.1:8090",
        "/stream/session/mysess/tcpproxy?app=sshd",
        "application/octet-stream",
        "v7.20230615",
        "dd501c7c7ec871fbcc5c7c40c21cae8d4bfb359657f4da96bcf57277a842c0fe",
    ),
    (
        "POST",
        "api.example.com",
        "/folders",
        "application/json",
        "v8.20240915",
        "879efef6f569c9ea6a5d79777f64f06dd5d4c365243c1eafc0e88729e716a915",
    ),
]


@pytest.mark.parametrize(("method", "host", "rel_url", "ctype", "version", "expected"), VECTORS)
def test_signature_vectors(
    method: str, host: str, rel_url: str, ctype: str, version: str, expected: str
) -> None:
    headers = sign_headers(
        method,
        rel_url,
        date=DATE,
        hostname=host,
        content_type=ctype,
        api_version=version,
        access_key=ACCESS,
        secret_key=SECRET,
    )
    assert headers == {
        "Date": "2024-01-02T03:04:05.678901+00:00",
        "X-BackendAI-Version": version,
        "Authorization": f"BackendAI signMethod=HMAC-SHA256, credential={ACCESS}:{expected}",
    }


def test_string_to_sign_matches_spec_row_1() -> None:
    text = string_to_sign(
        "get",
        "/session/mysess/download",
        date_header="2024-01-02T03:04:05.678901+00:00",
        hostname="127.0.0.1:8090",
        content_type="application/json; charset=utf-8",
        api_version="v7.20230615",
    )
    assert text.split("\n") == [
        "GET",
        "/session/mysess/download",
        "2024-01-02T03:04:05.678901+00:00",
        "host:127.0.0.1:8090",
        "content-type:application/json",
        "x-backendai-version:v7.20230615",
        EMPTY_BODY_HASH,
    ]
    assert EMPTY_BODY_HASH.startswith("e3b0c442") and EMPTY_BODY_HASH.endswith("b855")


def test_naive_date_is_utc() -> None:
    naive = DATE.replace(tzinfo=None)
    assert format_date(naive) == format_date(DATE)
    kwargs = dict(
        hostname="h", content_type="text/plain", api_version="v7.20230615", secret_key=SECRET
    )
    assert signature("GET", "/", date=naive, **kwargs) == signature("GET", "/", date=DATE, **kwargs)


def test_key_uses_the_dates_own_day() -> None:
    # 23:30 at -05:00 is the next day in UTC; the server derives the key from the
    # header's own calendar day, and so must we.
    local = datetime(2024, 1, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    kwargs = dict(
        hostname="h", content_type="text/plain", api_version="v7.20230615", secret_key=SECRET
    )
    assert format_date(local).endswith("-05:00")
    assert signature("GET", "/", date=local, **kwargs) != signature(
        "GET", "/", date=local.astimezone(UTC), **kwargs
    )


def test_every_field_changes_the_signature() -> None:
    base = dict(
        date=DATE,
        hostname="127.0.0.1:8090",
        content_type="application/json",
        api_version="v7.20230615",
        secret_key=SECRET,
    )
    ref = signature("GET", "/a", **base)  # type: ignore[arg-type]
    assert signature("POST", "/a", **base) != ref  # type: ignore[arg-type]
    assert signature("GET", "/b", **base) != ref  # type: ignore[arg-type]
    for key, other in [
        ("date", DATE + timedelta(microseconds=1)),
        ("hostname", "127.0.0.1:8091"),
        ("content_type", "text/plain"),
        ("api_version", "v8.20240915"),
        ("secret_key", SECRET + "x"),
    ]:
        assert signature("GET", "/a", **{**base, key: other}) != ref  # type: ignore[arg-type]


def test_relay_modules_import_only_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules);"
        "import sshkit.settings, sshkit.api.auth, sshkit.api.tunnel, sshkit.credentials;"
        "new = {m.split('.')[0] for m in set(sys.modules) - before};"
        "std = set(sys.stdlib_module_names);"
        "print(sorted(m for m in new if m not in std and m != 'sshkit'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


@given(st.integers(min_value=0, max_value=(2**33) * 1_000_000))
def test_posix_time_formats_as_the_utc_datetime_would(micros: int) -> None:
    # The relay passes time.time() (importing datetime costs it 1.5 ms); the header
    # and the signing key's day must be what the datetime of that instant gives.
    seconds = micros / 1_000_000
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=round(seconds * 1e6))
    assert format_date(seconds) == format_date(instant) == instant.isoformat()
    kwargs = dict(
        hostname="h", content_type="text/plain", api_version="v7.20230615", secret_key=SECRET
    )
    assert signature("GET", "/", date=seconds, **kwargs) == signature(
        "GET", "/", date=instant, **kwargs
    )


def test_posix_time_examples() -> None:
    assert format_date(DATE.timestamp()) == "2024-01-02T03:04:05.678901+00:00"
    assert format_date(0) == "1970-01-01T00:00:00+00:00"
    assert format_date(86399.9999996) == "1970-01-02T00:00:00+00:00"
