"""Checkpoints of a job's component in the node home: one file per round boundary, written atomically."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mesh.private_files import read_private, write_private
from services.executor.transport import decode_field, encode_field


class FileCheckpoints:
    """``api.Checkpoints`` under ``<home>/state/executor/<job id>/``: ``round-<n>.ckpt`` files.

    A file is a JSON header line (names, kinds, dtypes, shapes, sizes) and the raw little-endian
    bytes after it; it is written to a fresh temporary file and renamed, so a kill mid-write leaves
    the previous checkpoint as the latest. A component's state holds its secrets (HFL's X25519 mask
    keys and Paillier p, q), so files are 0600 in folders made 0700, and a file others may read is
    refused on load (mesh.private_files, as node keys).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, round_no: int, state: Mapping[str, Any]) -> None:
        header, blobs = [], []
        for name in sorted(state):
            kind, dtype, shape, raw = encode_field(state[name])
            header.append({"name": name, "kind": kind, "dtype": dtype, "shape": shape, "size": len(raw)})
            blobs.append(raw)
        buf = io.BytesIO()
        buf.write(json.dumps({"round": round_no, "fields": header}).encode() + b"\n")
        for raw in blobs:
            buf.write(raw)
        write_private(self.folder / f"round-{round_no}.ckpt", buf.getvalue())

    def latest(self) -> tuple[int, dict[str, Any]] | None:
        if not self.folder.exists():
            return None
        rounds = sorted(int(p.stem.split("-")[1]) for p in self.folder.glob("round-*.ckpt"))
        if not rounds:
            return None
        data = read_private(self.folder / f"round-{rounds[-1]}.ckpt")
        head, _, body = data.partition(b"\n")
        meta = json.loads(head)
        out: dict[str, Any] = {}
        at = 0
        for f in meta["fields"]:
            raw = body[at : at + f["size"]]
            at += f["size"]
            out[f["name"]] = decode_field(f["kind"], f["dtype"], f["shape"], raw)
        return int(meta["round"]), out


def model_digest(model: Mapping[str, Any]) -> bytes:
    """The digest a model is released by: sha256 over, per tensor in name order, its name, dtype, shape and bytes."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(model):
        _kind, dtype, shape, raw = encode_field(np.asarray(model[name]))
        h.update(json.dumps([name, dtype, shape, len(raw)]).encode() + b"\n")
        h.update(raw)
    return h.digest()
