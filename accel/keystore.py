"""Paillier keys a node keeps in its home: private keys in local files, never on the wire.

Layout (``<home>/accel/keys/``, folders made 0700): one file ``<key_id>.json`` per key pair, mode
0600, written through a fresh temporary file; a file others may read is refused on load::

    {"format": "interfed.accel.private-key/1", "key_id": "...",
     "n": "<hex>", "p": "<hex>", "q": "<hex>", "djn_base": "<hex>" | null}

Integers are lower-case hex of the plain (big-endian) value, as Python's ``format(x, "x")``
writes them. The file is local to the node and read only by its own processes, so this
format is informative: other implementations keep their keys as they see fit. ``djn_base``
is the key's published DJN base, kept so every service instance encrypts with the same one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from accel.errors import MalformedCiphertextError, PaillierKeyMismatchError
from accel.gmp_backend import make_djn_base
from accel.keys import KeyPair, PrivateKey, PublicKey, generate_keypair
from accel.wire import PublishedKey, key_id
from mesh.private_files import read_private, write_private

FORMAT = "interfed.accel.private-key/1"
#: A key id as ``accel.wire.key_id`` writes it: the only names looked up in the folder.
KEY_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class OwnedKey:
    """A key pair this node owns, with the public form it publishes."""

    published: PublishedKey
    private_key: PrivateKey

    @property
    def key_id(self) -> str:
        """The id the key is named by in requests and files: its public key's digest (``accel.wire.key_id``)."""
        return self.published.key_id


class KeyStore:
    """The key pairs in one folder; a missing folder is an empty store, no folder keeps keys in memory.

    The folder is read whole at start, and ``get`` reads ``<key_id>.json`` again on a miss: several
    processes of one node (the instances of its accelerator) share the folder, and a key one of them
    made (``generate``) is then served by every other.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._keys: dict[str, OwnedKey] = {}
        if folder is not None and folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                owned = load_key_file(path)
                self._keys[owned.key_id] = owned

    @classmethod
    def of_home(cls, home: Path) -> KeyStore:
        """The key store of a node home: ``<home>/accel/keys``."""
        return cls(home / "accel" / "keys")

    @classmethod
    def empty(cls) -> KeyStore:
        """A store that keeps what is added in memory only (tests, benchmarks, clients that own no key)."""
        return cls(None)

    def __contains__(self, key_ref: str) -> bool:
        return key_ref in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_ref: str) -> OwnedKey | None:
        """The owned key of that id, from memory or else from its file; None if this store does not hold it."""
        owned = self._keys.get(key_ref)
        if owned is None and self.folder is not None and KEY_ID.fullmatch(key_ref):
            path = self.folder / f"{key_ref}.json"
            if path.is_file():
                owned = self._keys[key_ref] = load_key_file(path)
        return owned

    def ids(self) -> list[str]:
        """The ids of the keys held in memory (loaded or added), sorted."""
        return sorted(self._keys)

    def add(self, pair: KeyPair, *, djn_base: int | None = None) -> OwnedKey:
        """Keep a key pair (written to the folder at once); returns it with its key id."""
        owned = OwnedKey(PublishedKey(pair.public_key, djn_base), pair.private_key)
        if self.folder is not None:
            save_key_file(self.folder / f"{owned.key_id}.json", owned)
        self._keys[owned.key_id] = owned
        return owned

    def generate(self, bits: int = 2048, *, safe_primes: bool = False, djn: bool = True) -> OwnedKey:
        """A fresh key pair, kept; with ``djn``, a DJN base is drawn for it too."""
        pair = generate_keypair(bits, safe_primes=safe_primes)
        return self.add(pair, djn_base=make_djn_base(pair.public_key) if djn else None)


def save_key_file(path: Path, owned: OwnedKey) -> None:
    """Write an owned key to ``path`` as JSON (hex integers), readable by its owner only, replacing the file at once."""
    body = {
        "format": FORMAT,
        "key_id": owned.key_id,
        "n": format(owned.published.public_key.n, "x"),
        "p": format(owned.private_key.p, "x"),
        "q": format(owned.private_key.q, "x"),
        "djn_base": None if owned.published.djn_base is None else format(owned.published.djn_base, "x"),
    }
    write_private(path, json.dumps(body, indent=2).encode())


def load_key_file(path: Path) -> OwnedKey:
    """The key pair in ``path``; refused (PrivateFileError) if others than its owner may read the file."""
    try:
        body = json.loads(read_private(path).decode("utf-8"))
        if body.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        public = PublicKey(int(body["n"], 16))
        private = PrivateKey(public, int(body["p"], 16), int(body["q"], 16))
        hs = None if body.get("djn_base") is None else int(body["djn_base"], 16)
    except (OSError, ValueError, KeyError, TypeError, PaillierKeyMismatchError) as exc:
        raise MalformedCiphertextError(f"{path}: not a Paillier key file ({exc})") from exc
    owned = OwnedKey(PublishedKey(public, hs), private)
    if body.get("key_id") != key_id(public):
        raise MalformedCiphertextError(f"{path}: key_id does not match n")
    return owned
