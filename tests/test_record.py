"""`sshkit._record.Record`: the relay's dataclass stand-in keeps a dataclass's behaviour."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest

from sshkit.credentials import StoredLogin, read_login, write_login
from sshkit.relay.pump import CloseInfo, PumpResult
from sshkit.settings import Connection


def connection() -> Connection:
    return Connection(
        "https://api.example", "api", "AKEXAMPLE", "s3cret", "sid-1", None, True, None, "default"
    )


def test_fields_keep_declaration_order_and_secrets_stay_out_of_the_repr() -> None:
    conn = connection()
    assert list(conn.as_dict()) == [
        "endpoint",
        "endpoint_type",
        "access_key",
        "secret_key",
        "session_id",
        "api_version",
        "verify_tls",
        "ca_bundle",
        "profile",
        "domain",
    ]
    assert repr(conn).startswith("Connection(endpoint='https://api.example', endpoint_type='api'")
    assert "s3cret" not in repr(conn) and "sid-1" not in repr(conn)
    assert "s3cret" not in repr(StoredLogin("https://x", "api", "AK", "s3cret"))


def test_equality_hash_and_frozenness() -> None:
    conn = connection()
    assert conn == connection() and hash(conn) == hash(connection())
    assert conn != conn.replace(session_id="sid-2")
    assert conn.replace(session_id="sid-2").session_id == "sid-2"
    assert CloseInfo(1000) != (1000, "", False)
    with pytest.raises(AttributeError):
        conn.endpoint = "https://elsewhere"
    with pytest.raises(TypeError):
        conn.replace(not_a_field=1)


def test_mutable_records_change_and_are_unhashable() -> None:
    result = PumpResult()
    result.bytes_up += 3
    assert result == PumpResult(bytes_up=3)
    with pytest.raises(TypeError):
        hash(result)


def test_copy_and_pickle_rebuild_through_init() -> None:
    for value in (connection(), PumpResult(bytes_down=7, close=CloseInfo(1001, "eof"))):
        assert copy.copy(value) == value
        assert copy.deepcopy(value) == value
        assert pickle.loads(pickle.dumps(value)) == value


def test_a_stored_login_file_keeps_its_key_order(tmp_path: Path) -> None:
    env = {"SSHKIT_STATE_DIR": str(tmp_path), "HOME": str(tmp_path)}
    login = StoredLogin("https://api.example", "api", "AK", "s3cret", username="u")
    path = write_login("default", login, env)
    assert list(json.loads(path.read_bytes())) == ["format", *login.as_dict()]
    assert read_login("default", env) == login
