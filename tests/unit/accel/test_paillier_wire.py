"""The wire format: keys and vectors as Avro records, across backends, and the golden Paillier vectors."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import numpy as np
import phe
import pytest
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from accel import (
    Encryption,
    Gmpy2Backend,
    KeyPair,
    MalformedCiphertextError,
    Packer,
    PackingSpec,
    Paillier,
    PaillierBackend,
    PheBackend,
    PrivateKey,
    PublicKey,
)
from accel.keystore import KeyStore, load_key_file
from accel.wire import (
    PublishedKey,
    from_avro,
    int_to_le,
    key_id,
    le_to_int,
    le_to_signed,
    packed_from_record,
    packed_record,
    plain_from_record,
    plain_record,
    public_key_from_record,
    public_key_record,
    signed_to_le,
    to_avro,
    vector_from_record,
    vector_record,
)
from mesh.codec import schema_dir
from mesh.errors import PrivateFileError
from mesh.events import CIPHERTEXT_VECTOR, PACKED_VECTOR, PAILLIER_PUBLIC_KEY, PLAIN_VECTOR

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "paillier.json").read_text(encoding="utf-8"))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**4096))
def test_unsigned_integers_are_minimal_little_endian(x: int) -> None:
    raw = int_to_le(x)
    assert le_to_int(raw) == x
    assert raw == x.to_bytes(len(raw), "little")
    assert not raw or raw[-1] != 0


@settings(max_examples=60, deadline=None)
@given(st.integers(-(2**2048), 2**2048))
def test_signed_integers_zigzag_then_little_endian(m: int) -> None:
    assert le_to_signed(signed_to_le(m)) == m
    assert le_to_int(signed_to_le(m)) == (2 * m if m >= 0 else -2 * m - 1)


def test_public_key_record_round_trips_with_its_djn_base(
    keypair: KeyPair, backends: dict[str, PaillierBackend]
) -> None:
    djn = backends["gmpy2-djn"]
    assert isinstance(djn, Gmpy2Backend)
    published = PublishedKey(keypair.public_key, djn.djn_base, djn.djn_exponent_bits)
    data = to_avro(PAILLIER_PUBLIC_KEY, public_key_record(published))
    assert public_key_from_record(from_avro(PAILLIER_PUBLIC_KEY, data)) == published
    # n comes first: a length varint then n's little-endian bytes.
    raw_n = int_to_le(keypair.public_key.n)
    assert data[1 : 1 + len(raw_n)] == raw_n or data[2 : 2 + len(raw_n)] == raw_n
    assert len(key_id(keypair.public_key)) == 32


def test_vectors_round_trip_through_avro_and_decrypt(backend: PaillierBackend) -> None:
    ops = Paillier(backend)
    encrypted = ops.encrypt(np.array([1.25, -3.5, 0.0]), precision=20)
    restored = vector_from_record(
        from_avro(CIPHERTEXT_VECTOR, to_avro(CIPHERTEXT_VECTOR, vector_record(encrypted))), backend
    )
    assert list(restored.ciphertexts) == [int(c) for c in encrypted.ciphertexts]
    assert (restored.exponent, restored.bound) == (encrypted.exponent, encrypted.bound)
    np.testing.assert_array_equal(ops.decrypt(restored), [1.25, -3.5, 0.0])


def test_packed_vectors_round_trip_with_their_budget(backends: dict[str, PaillierBackend]) -> None:
    backend = backends["gmpy2-key-owner"]
    packer = Packer(backend, PackingSpec(16, 8, clip=2.0, max_terms=10))
    packed = packer.encrypt(np.linspace(-2, 2, 30))
    packed += packed
    restored = packed_from_record(from_avro(PACKED_VECTOR, to_avro(PACKED_VECTOR, packed_record(packed))), backend)
    assert (restored.spec, restored.length, restored.terms) == (packed.spec, packed.length, 2)
    np.testing.assert_array_equal(packer.decrypt_quantised(restored), packer.decrypt_quantised(packed))


@pytest.mark.parametrize(
    ("sender", "receiver"),
    [("phe", "gmpy2-textbook"), ("gmpy2-djn", "phe"), ("gmpy2-key-owner", "phe"), ("phe", "gmpy2-key-owner")],
)
def test_one_party_encrypts_another_decrypts_through_the_wire(keypair: KeyPair, sender: str, receiver: str) -> None:
    """Party A holds only the public key it received as bytes; party B holds the private key and another backend."""
    owner = make_backend(receiver, keypair.public_key, keypair.private_key)
    key_bytes = to_avro(PAILLIER_PUBLIC_KEY, public_key_record(PublishedKey(owner.public_key)))

    # Party A: the public key from bytes, its own backend, values encrypted and added to, out as bytes.
    public = public_key_from_record(from_avro(PAILLIER_PUBLIC_KEY, key_bytes)).public_key
    a = make_backend(sender, public, keypair.private_key if sender == "gmpy2-key-owner" else None)
    values = np.array([0.5, -2.25, 1e6, -1e-3])
    encrypted = Paillier(a).encrypt(values, precision=24) + np.array([1.0, 1.0, 1.0, 1.0])
    wire = to_avro(CIPHERTEXT_VECTOR, vector_record(encrypted))

    # Party B: the bytes under its own backend, decrypted exactly.
    received = vector_from_record(from_avro(CIPHERTEXT_VECTOR, wire), owner)
    np.testing.assert_allclose(Paillier(owner).decrypt(received), values + 1.0, rtol=0, atol=2**-24)

    # And back: B's ciphertexts, operated on by A, decrypt under B again.
    doubled = vector_from_record(from_avro(CIPHERTEXT_VECTOR, wire), a) * 2
    back = vector_from_record(from_avro(CIPHERTEXT_VECTOR, to_avro(CIPHERTEXT_VECTOR, vector_record(doubled))), owner)
    np.testing.assert_allclose(Paillier(owner).decrypt(back), 2 * (values + 1.0), rtol=0, atol=2**-23)


def make_backend(name: str, public: PublicKey, private: PrivateKey | None) -> PaillierBackend:
    if name == "phe":
        return PheBackend(public, private)
    mode = {"gmpy2-textbook": Encryption.TEXTBOOK, "gmpy2-djn": Encryption.DJN, "gmpy2-key-owner": Encryption.KEY_OWNER}
    return Gmpy2Backend(public, private, encryption=mode[name])


def test_malformed_records_are_refused(backends: dict[str, PaillierBackend]) -> None:
    backend = backends["gmpy2-textbook"]
    good = to_avro(CIPHERTEXT_VECTOR, vector_record(Paillier(backend).encrypt(np.array([1.0]))))
    for bad in (good[:-1], good + b"\x00"):
        with pytest.raises(MalformedCiphertextError):
            from_avro(CIPHERTEXT_VECTOR, bad)
    n2 = backend.public_key.nsquare
    for value in (0, n2):
        with pytest.raises(MalformedCiphertextError, match="outside"):
            vector_from_record({"exponent": 0, "bound": b"\x01", "ciphertexts": [int_to_le(value)]}, backend)
    with pytest.raises(MalformedCiphertextError, match="bound"):
        vector_from_record({"exponent": 0, "bound": int_to_le(backend.public_key.n), "ciphertexts": []}, backend)
    packed = packed_record(Packer(backend).encrypt(np.zeros(3)))
    with pytest.raises(MalformedCiphertextError, match="slot"):
        packed_from_record({**packed, "slots": packed["slots"] + 1}, backend)
    with pytest.raises(MalformedCiphertextError, match="terms"):
        packed_from_record({**packed, "terms": 1000}, backend)
    with pytest.raises(MalformedCiphertextError, match="odd"):
        public_key_from_record({"n": int_to_le(10), "djn_base": None, "djn_exponent_bits": None})


def test_requests_and_replies_carry_the_standalone_records_unchanged() -> None:
    """AccelRequest/AccelReply inline the records of schemas/accel/; each inline copy must equal its file."""
    folder = schema_dir() / "accel"
    standalone = {
        name: json.loads((folder / f"{name.rsplit('.', 1)[1]}.avsc").read_text(encoding="utf-8"))
        for name in (PAILLIER_PUBLIC_KEY, CIPHERTEXT_VECTOR, PACKED_VECTOR, PLAIN_VECTOR)
    }
    found: dict[str, int] = {}
    for file in ("AccelRequest.avsc", "AccelReply.avsc"):
        for node in _named_records(json.loads((folder / file).read_text(encoding="utf-8"))):
            full = f"{node.get('namespace')}.{node['name']}"
            if full in standalone:
                assert to_parsing_canonical_form(node) == to_parsing_canonical_form(standalone[full]), (file, full)
                found[full] = found.get(full, 0) + 1
    assert found == {PAILLIER_PUBLIC_KEY: 2, CIPHERTEXT_VECTOR: 2, PACKED_VECTOR: 2, PLAIN_VECTOR: 2}


def _named_records(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [r for item in node for r in _named_records(item)]
    if not isinstance(node, dict):
        return []
    found = [node] if node.get("type") == "record" else []
    for child in [node.get("type"), node.get("items"), *(f["type"] for f in node.get("fields", []))]:
        if isinstance(child, dict | list):
            found += _named_records(child)
    return found


# -- golden vectors (tests/vectors/paillier.json) ----------------------------------------------


def _golden_key() -> tuple[PublicKey, PrivateKey]:
    key = VECTORS["key"]
    public = PublicKey(int(key["n_hex"], 16))
    return public, PrivateKey(public, int(key["p_hex"], 16), int(key["q_hex"], 16))


def test_golden_ciphertexts_are_what_phe_makes_with_the_same_nonce() -> None:
    public, _ = _golden_key()
    phe_public = phe.PaillierPublicKey(public.n)
    for case in VECTORS["textbook"]:
        residue = case["plaintext"] % public.n
        assert int(case["residue_hex"], 16) == residue
        assert phe_public.raw_encrypt(residue, r_value=int(case["nonce_hex"], 16)) == int(case["ciphertext_hex"], 16)
    djn = VECTORS["djn"]
    hs, a = int(VECTORS["key"]["djn_base_hex"], 16), int(djn["exponent_hex"], 16)
    assert (
        int(djn["ciphertext_hex"], 16)
        == (1 + public.n * djn["plaintext"]) * pow(hs, a, public.nsquare) % public.nsquare
    )


@pytest.mark.parametrize("name", ["phe", "gmpy2-textbook", "gmpy2-key-owner"])
def test_every_backend_decrypts_the_golden_ciphertexts(name: str) -> None:
    public, private = _golden_key()
    backend = make_backend(name, public, private)
    cases = VECTORS["textbook"]
    plain = backend.decrypt([int(c["ciphertext_hex"], 16) for c in [*cases, VECTORS["djn"]]])
    assert plain == [c["plaintext"] % public.n for c in [*cases, VECTORS["djn"]]]
    arithmetic = VECTORS["arithmetic_on_textbook_0_and_1"]
    c0, c1 = (int(c["ciphertext_hex"], 16) for c in cases[:2])
    assert backend.add([c0], [c1]) == [int(arithmetic["add_hex"], 16)]
    assert backend.add_plain([c0], [arithmetic["add_plain"]["operand"]]) == [
        int(arithmetic["add_plain"]["ciphertext_hex"], 16)
    ]
    assert backend.mul_plain([c0], [arithmetic["mul_plain"]["scalar"]]) == [
        int(arithmetic["mul_plain"]["ciphertext_hex"], 16)
    ]
    vec = VECTORS["fixed_point_vector"]
    record = from_avro(CIPHERTEXT_VECTOR, bytes.fromhex(VECTORS["records"]["ciphertext_vector"]["avro_hex"]))
    decrypted = Paillier(backend).decrypt(vector_from_record(record, backend))
    np.testing.assert_array_equal(decrypted, vec["values"])
    packed = VECTORS["packed_vector"]
    spec = PackingSpec(16, 8, clip=1.0)
    restored = packed_from_record(
        from_avro(PACKED_VECTOR, bytes.fromhex(VECTORS["records"]["packed_vector"]["avro_hex"])), backend
    )
    assert Packer(backend, spec).decrypt_quantised(restored).tolist() == packed["quantised"]


def test_golden_records_decode_and_encode_to_their_bytes() -> None:
    for case in VECTORS["records"].values():
        data = bytes.fromhex(case["avro_hex"])
        record = from_avro(case["full_name"], data)
        assert to_avro(case["full_name"], record) == data
        assert _as_json(record) == case["record"]
    mantissas, exponent = plain_from_record(
        from_avro(PLAIN_VECTOR, bytes.fromhex(VECTORS["records"]["plain_vector"]["avro_hex"]))
    )
    assert [str(m) for m in mantissas] == VECTORS["plain_vector"]["mantissas"]
    assert plain_record(mantissas, exponent)["mantissas"] == [
        bytes.fromhex(h) for h in VECTORS["plain_vector"]["zigzag_le_hex"]
    ]


def _as_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    return value


# -- the local private key file ------------------------------------------------------------


def test_key_files_keep_the_pair_and_its_djn_base_private_to_the_owner(tmp_path: Path, keypair: KeyPair) -> None:
    store = KeyStore(tmp_path / "keys")
    owned = store.add(keypair, djn_base=12345)
    path = tmp_path / "keys" / f"{owned.key_id}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = KeyStore(tmp_path / "keys").get(owned.key_id)
    assert again is not None
    assert (again.private_key, again.published.djn_base) == (keypair.private_key, 12345)
    body = json.loads(path.read_text())
    body["n"] = format(keypair.public_key.n + 2, "x")
    path.write_text(json.dumps(body))
    with pytest.raises(MalformedCiphertextError, match="not a Paillier key file"):
        load_key_file(path)


def test_a_key_file_others_may_read_is_refused_on_load_and_by_the_store(tmp_path: Path, keypair: KeyPair) -> None:
    """p and q are the private key: a key file with any group or other bit is refused, like a node key."""
    owned = KeyStore(tmp_path / "keys").add(keypair)
    path = tmp_path / "keys" / f"{owned.key_id}.json"
    path.chmod(0o640)
    with pytest.raises(PrivateFileError, match="chmod 600"):
        load_key_file(path)
    with pytest.raises(PrivateFileError, match="chmod 600"):
        KeyStore(tmp_path / "keys")


def test_a_key_file_is_written_through_a_fresh_temporary_file_in_a_0700_folder(
    tmp_path: Path, keypair: KeyPair
) -> None:
    """A file left (or planted) at the old temporary name, readable by all, never becomes the key file."""
    owned = KeyStore.empty().add(keypair)
    planted = tmp_path / "keys" / f"{owned.key_id}.tmp"
    planted.parent.mkdir()
    planted.write_text("")
    planted.chmod(0o666)
    KeyStore(tmp_path / "keys").add(keypair)
    path = tmp_path / "keys" / f"{owned.key_id}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert planted.read_text() == ""
    store = tmp_path / "fresh" / "keys"
    KeyStore(store).add(keypair)
    assert {stat.S_IMODE(store.stat().st_mode), stat.S_IMODE(store.parent.stat().st_mode)} == {0o700}
