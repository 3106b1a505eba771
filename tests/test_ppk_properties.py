"""Property tests: round trips for every key type; corrupt input only raises KeyFormatError."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sshkit.errors import KeyFormatError
from sshkit.formats import openssh, ppk
from sshkit.formats.keys import (
    PrivateKey,
    from_cryptography,
    load_private_key,
    parse_public_line,
    validate_params,
)
from tests.ppk_vectors import PASSPHRASE, VECTORS

# Argon2 at its cheapest (8 KiB per lane, 1 pass): the KDF is not what these tests are about.
CHEAP = ppk.Argon2Params("Argon2id", memory_kib=8, passes=1, parallelism=1, salt=b"s" * 16)


def _fixture(name: str) -> PrivateKey:
    return load_private_key((VECTORS / "openssh" / name).read_bytes(), PASSPHRASE)


# RSA and DSA generation is slow, so those come from the fixtures; EC and EdDSA keys are
# generated from hypothesis-chosen secrets.
FIXED = {n: _fixture(n) for n in ("rsa2048", "rsa4096", "dsa1024", "rsa2048_pkcs1")}


def _orders() -> dict[str, int]:
    from cryptography.hazmat.primitives.asymmetric import ec

    return {c.name: c.group_order for c in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1())}


_ORDERS = _orders()


@st.composite
def keys(draw: st.DrawFn) -> PrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

    kind = draw(st.sampled_from(["fixed", "ed25519", "ed448", "ecdsa"]))
    if kind == "fixed":
        key = FIXED[draw(st.sampled_from(sorted(FIXED)))]
        return key
    if kind == "ed25519":
        obj: object = ed25519.Ed25519PrivateKey.from_private_bytes(
            draw(st.binary(min_size=32, max_size=32))
        )
    elif kind == "ed448":
        obj = ed448.Ed448PrivateKey.from_private_bytes(draw(st.binary(min_size=57, max_size=57)))
    else:
        curve = draw(st.sampled_from(sorted(_ORDERS)))
        k = draw(st.integers(min_value=1, max_value=_ORDERS[curve] - 1))
        curve_obj = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1}.get(curve, ec.SECP521R1)
        obj = ec.derive_private_key(k, curve_obj())
    return PrivateKey(validate_params(from_cryptography(obj)))  # type: ignore[arg-type]


# Lone surrogates cannot be written to any file; test_unencodable_comment covers them.
ppk_comments = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40
)
passphrases = st.one_of(st.none(), st.binary(min_size=1, max_size=32))


@st.composite
def argon2_params(draw: st.DrawFn) -> ppk.Argon2Params:
    lanes = draw(st.integers(1, 3))
    return ppk.Argon2Params(
        flavour=draw(st.sampled_from(ppk.ARGON2_FLAVOURS)),
        memory_kib=draw(st.integers(8 * lanes, 8 * lanes + 24)),
        passes=draw(st.integers(1, 2)),
        parallelism=lanes,
        salt=draw(st.binary(min_size=8, max_size=32)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=keys(),
    comment=ppk_comments,
    version=st.sampled_from([2, 3]),
    passphrase=passphrases,
    argon2=argon2_params(),
)
def test_ppk_read_of_write_is_the_key(
    key: PrivateKey, comment: str, version: int, passphrase: bytes | None, argon2: ppk.Argon2Params
) -> None:
    key = key.with_comment(comment)
    data = ppk.encode_ppk(key, version=version, passphrase=passphrase, argon2=argon2)
    back = load_private_key(data, passphrase)
    assert back == key
    assert back.comment == comment
    assert back.encrypted == bool(passphrase)
    # Deterministic given the same inputs (what makes byte-exact known answers possible).
    assert ppk.encode_ppk(back, version=version, passphrase=passphrase, argon2=argon2) == data


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=keys(),
    comment=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    passphrase=passphrases,
    check=st.integers(0, 2**32 - 1),
    salt=st.binary(min_size=16, max_size=16),
)
def test_openssh_read_of_write_is_the_key(
    key: PrivateKey, comment: str, passphrase: bytes | None, check: int, salt: bytes
) -> None:
    key = key.with_comment(comment)
    data = openssh.encode_openssh(
        key, check_int=check, passphrase=passphrase, kdf_salt=salt, kdf_rounds=1
    )
    back = load_private_key(data, passphrase)
    assert back == key
    assert back.comment == comment


@pytest.mark.parametrize("version", [2, 3])
def test_unencodable_comment_is_a_key_format_error(version: int) -> None:
    key = FIXED["rsa2048"].with_comment("\ud800")
    with pytest.raises(KeyFormatError, match="comment"):
        ppk.encode_ppk(key, version=version)
    with pytest.raises(KeyFormatError, match="comment"):
        openssh.encode_openssh(key, check_int=1, passphrase=None, kdf_salt=b"s" * 16, kdf_rounds=1)


def test_every_key_type_is_covered_by_the_round_trip_strategy() -> None:
    from sshkit.formats.keys import KEY_TYPES

    made = {k.key_type for k in FIXED.values()} | {"ssh-ed25519", "ssh-ed448"}
    made |= {f"ecdsa-sha2-nistp{b}" for b in (256, 384, 521)}
    assert made == set(KEY_TYPES)


# --- corrupt input ------------------------------------------------------------------------


def _corpus() -> dict[str, tuple[bytes, bytes | None]]:
    ed = _fixture("ed25519")
    ec = _fixture("ecdsa256")
    return {
        "v3-none-ed25519": (ppk.encode_ppk(ed, version=3), None),
        "v2-none-rsa2048": ((VECTORS / "ppk" / "rsa2048.v2.none.ppk").read_bytes(), None),
        "v3-aes-ecdsa256": (
            ppk.encode_ppk(ec, version=3, passphrase=PASSPHRASE, argon2=CHEAP),
            PASSPHRASE,
        ),
    }


CORPUS = _corpus()


def _outcome(data: bytes, passphrase: bytes | None, original: PrivateKey) -> None:
    """Either a KeyFormatError, or (the MAC matched) exactly the original key."""
    try:
        key = load_private_key(data, passphrase)
    except KeyFormatError:
        return
    assert key == original
    assert key.comment == original.comment


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_truncation_is_a_key_format_error(name: str) -> None:
    data, passphrase = CORPUS[name]
    original = load_private_key(data, passphrase)
    for end in range(len(data)):
        prefix = data[:end]
        if prefix == data.rstrip(b"\n"):
            assert load_private_key(prefix, passphrase) == original  # no final newline is fine
            continue
        with pytest.raises(KeyFormatError):
            load_private_key(prefix, passphrase)


def _mutations(rng: random.Random) -> list[Callable[[bytes], bytes]]:
    def flip(d: bytes) -> bytes:
        i = rng.randrange(len(d))
        return d[:i] + bytes([d[i] ^ (1 << rng.randrange(8))]) + d[i + 1 :]

    def replace(d: bytes) -> bytes:
        i = rng.randrange(len(d))
        return d[:i] + bytes([rng.randrange(256)]) + d[i + 1 :]

    def insert(d: bytes) -> bytes:
        i = rng.randrange(len(d) + 1)
        return d[:i] + bytes([rng.choice(b"0123456789aA+/=: \r\n\x00\xff")]) + d[i:]

    def delete(d: bytes) -> bytes:
        i = rng.randrange(len(d))
        n = rng.randrange(1, 8)
        return d[:i] + d[i + n :]

    def lines(d: bytes) -> bytes:
        ls = d.split(b"\n")
        i, j = rng.randrange(len(ls)), rng.randrange(len(ls))
        op = rng.randrange(3)
        if op == 0:
            ls.insert(j, ls[i])
        elif op == 1:
            ls[i], ls[j] = ls[j], ls[i]
        else:
            del ls[i]
        return b"\n".join(ls)

    def digits(d: bytes) -> bytes:
        spots = [i for i, c in enumerate(d) if 0x30 <= c <= 0x39]
        i = rng.choice(spots)
        return d[:i] + bytes([rng.choice(b"0123456789")]) + d[i + 1 :]

    return [flip, replace, insert, delete, lines, digits]


def test_ten_thousand_random_mutations_raise_only_key_format_error() -> None:
    rng = random.Random(20261128)  # fixed seed: a failure is reproducible
    ops = _mutations(rng)
    originals = {n: load_private_key(d, p) for n, (d, p) in CORPUS.items()}
    names = sorted(CORPUS)
    outcomes = {"rejected": 0, "loaded": 0}
    for i in range(10_000):
        name = names[i % len(names)]
        data, passphrase = CORPUS[name]
        mutated = data
        for _ in range(rng.randrange(1, 4)):
            mutated = rng.choice(ops)(mutated) or mutated
        try:
            key = load_private_key(mutated, passphrase)
        except KeyFormatError:
            outcomes["rejected"] += 1
            continue
        outcomes["loaded"] += 1
        assert key == originals[name], (name, mutated)
        assert key.comment == originals[name].comment
    assert outcomes["rejected"] > 9_000, outcomes  # a harmless edit (e.g. LF → CR) may load


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(CORPUS)),
    position=st.floats(0, 1, exclude_max=True),
    junk=st.binary(min_size=0, max_size=6),
    cut=st.integers(0, 6),
)
def test_hypothesis_splices_raise_only_key_format_error(
    name: str, position: float, junk: bytes, cut: int
) -> None:
    data, passphrase = CORPUS[name]
    i = int(position * len(data))
    _outcome(data[:i] + junk + data[i + cut :], passphrase, load_private_key(data, passphrase))


def test_openssh_and_public_line_mutations_raise_only_key_format_error() -> None:
    rng = random.Random(7)
    ops = _mutations(rng)
    encrypted = openssh.encode_openssh(
        _fixture("ed25519"), check_int=1, passphrase=PASSPHRASE, kdf_salt=b"s" * 16, kdf_rounds=1
    )
    sources = [
        (VECTORS / "openssh" / "ed25519").read_bytes(),
        (VECTORS / "openssh" / "ecdsa384").read_bytes(),
        encrypted,  # one bcrypt round: the KDF is not under test
    ]
    import base64

    for i in range(1_500):
        src = sources[i % len(sources)]
        # Mutate the decoded container, not just its base64, to reach the binary parser.
        body = b"".join(src.split(b"\n")[1:-2])
        raw = base64.b64decode(body)
        mutated = rng.choice(ops)(raw) or raw
        armored = (
            openssh.BEGIN.encode()
            + b"\n"
            + base64.b64encode(mutated)
            + b"\n"
            + openssh.END.encode()
        )
        try:
            load_private_key(armored, PASSPHRASE)
        except KeyFormatError:
            pass
    line = (VECTORS / "openssh" / "rsa2048.pub").read_bytes()
    for _ in range(1_500):
        mutated = rng.choice(ops)(line) or line
        try:
            parse_public_line(mutated.decode("utf-8", "replace"))
        except KeyFormatError:
            pass
