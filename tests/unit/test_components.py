"""The component store's pure parts: spec and parameter validation, the deterministic archive, the artifact
signature, installation and loading from the installed copy, and the built-in stats component's maths."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accel.client import AccelClient
from mesh.signing import NodeSigner
from services.components.artifact import SIGNATURE_TAG, pack, sha256, sign, signing_bytes, unpack, verify_signature
from services.components.errors import (
    BadArtifactSignatureError,
    ComponentLoadError,
    DigestMismatchError,
    InvalidSpecError,
    MalformedArtifactError,
    ParamsError,
)
from services.components.service import BUILTIN_ROOT, builtin_folders, check_spec_matches, read_folder
from services.components.spec import parse_spec, validate_params
from services.components.store import ComponentStore
from services.executor.api import JobContext, LocalDataset, LocalHub, MemoryCheckpoints

STATS = BUILTIN_ROOT / "stats"


def spec_dict(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((STATS / "component.json").read_text())
    return raw | changes


def test_the_builtin_stats_spec_parses_and_is_found_as_builtin() -> None:
    spec = parse_spec((STATS / "component.json").read_bytes())
    assert (spec.ref, spec.roles, spec.entrypoint) == (
        "stats:1.0.0",
        ("host", "aggregator"),
        "component:FederatedStats",
    )
    assert STATS in builtin_folders()
    assert parse_spec(spec.canonical_json()) == spec


@pytest.mark.parametrize("folder", builtin_folders(), ids=lambda folder: folder.name)
def test_every_builtin_spec_parses_and_names_its_folder(folder: Path) -> None:
    """publish-builtin publishes every folder: one spec the store refuses would stop it for all of them."""
    spec = parse_spec((folder / "component.json").read_bytes())
    assert spec.code == folder.name
    assert (folder / (spec.entrypoint.partition(":")[0].replace(".", "/") + ".py")).exists()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"code": "Bad Code"}, "code"),
        ({"version": "one"}, "version"),
        ({"roles": ["guest", "boss"]}, "roles"),
        ({"entrypoint": "no-colon"}, "entrypoint"),
        ({"parameters": [{"name": "k", "type": "int", "default": 5, "validator": "[0,1]"}]}, "default of k"),
        ({"parameters": [{"name": "k", "type": "complex"}]}, "type"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(change: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidSpecError, match=says):
        parse_spec(spec_dict(**change))


def test_params_get_defaults_and_every_bad_one_is_listed() -> None:
    spec = parse_spec(
        spec_dict(
            parameters=[
                {"name": "rate", "type": "float", "default": 0.1, "validator": "(0,1]"},
                {"name": "epochs", "type": "int", "optional": False, "validator": "[1,)"},
                {"name": "scheme", "type": "string", "default": "paillier", "validator": "enum:paillier|masks"},
                {"name": "tag", "type": "string", "validator": "regular:[a-z]+"},
                {"name": "shuffle", "type": "bool", "default": True},
            ]
        )
    )
    assert validate_params(spec, {"epochs": 3}) == {"rate": 0.1, "epochs": 3, "scheme": "paillier", "shuffle": True}
    assert validate_params(spec, {"epochs": 1, "rate": 1})["rate"] == 1.0
    with pytest.raises(ParamsError) as caught:
        validate_params(spec, {"rate": 0, "scheme": "rot13", "tag": "A1", "shuffle": 1, "extra": 2})
    assert set(caught.value.problems) == {"rate", "epochs", "scheme", "tag", "shuffle", "extra"}
    assert caught.value.problems["epochs"] == "required"
    assert "outside (0,1]" in caught.value.problems["rate"]
    with pytest.raises(ParamsError, match="expected an integer"):
        validate_params(spec, {"epochs": True})


def test_the_archive_is_deterministic_and_skips_caches(tmp_path: Path) -> None:
    copy = shutil.copytree(STATS, tmp_path / "stats", ignore=shutil.ignore_patterns("__pycache__"))
    first = pack(copy)
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "component.cpython-312.pyc").write_bytes(b"cache")
    (copy / "component.py").touch()  # a new mtime changes nothing
    assert pack(copy) == first == pack(STATS)
    assert [name for name, _ in unpack(first)] == ["__init__.py", "component.json", "component.py"]
    (copy / "component.py").write_text((copy / "component.py").read_text() + "\n")
    assert pack(copy) != first


def test_an_archive_not_in_the_protocol_form_is_refused() -> None:
    good = pack(STATS)
    with pytest.raises(MalformedArtifactError):
        unpack(good[:-10])
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.py", "x = 1")
    with pytest.raises(MalformedArtifactError, match="safe relative"):
        unpack(buffer.getvalue())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.py", "x = 1")
    with pytest.raises(MalformedArtifactError, match="deterministic"):
        unpack(buffer.getvalue())


def test_the_signature_covers_tag_and_digest_under_the_publisher_key() -> None:
    signer, other = NodeSigner(Ed25519PrivateKey.generate()), NodeSigner(Ed25519PrivateKey.generate())
    digest = sha256(pack(STATS))
    assert signing_bytes(digest) == SIGNATURE_TAG + digest == b"interfed.artifact.v1\x00" + digest
    signature = sign(signer, digest)
    verify_signature(signer.public_key, digest, signature)
    with pytest.raises(BadArtifactSignatureError):
        verify_signature(other.public_key, digest, signature)
    with pytest.raises(BadArtifactSignatureError):
        verify_signature(signer.public_key, sha256(b"other"), signature)
    with pytest.raises(BadArtifactSignatureError):  # the same key's signature over the bare digest is no artifact one
        verify_signature(signer.public_key, digest, signer.sign(digest))


def installed_stats(tmp_path: Path) -> tuple[ComponentStore, NodeSigner]:
    signer = NodeSigner(Ed25519PrivateKey.generate())
    spec, archive = read_folder(STATS)
    store = ComponentStore(tmp_path / "components")
    signature = sign(signer, sha256(archive))
    store.install(spec, archive, publisher="party0", publisher_key=signer.public_key, signature=signature)
    return store, signer


def test_load_imports_the_installed_copy_and_refuses_an_altered_one(tmp_path: Path) -> None:
    store, _ = installed_stats(tmp_path)
    found = store.installed("stats", "1.0.0")
    assert found is not None
    assert found.enabled
    component = found.load()
    module_file = Path(str(sys.modules[type(component).__module__].__file__))
    assert module_file.is_relative_to(tmp_path / "components" / "stats" / "1.0.0" / "files")
    assert not (found.path / "files" / "__pycache__").exists()
    (found.path / "files" / "component.py").write_text("class FederatedStats: pass\n")
    with pytest.raises(DigestMismatchError):
        found.load()
    store.set_enabled("stats", "1.0.0", False)
    disabled = store.installed("stats", "1.0.0")
    assert disabled is not None
    with pytest.raises(ComponentLoadError, match="disabled"):
        disabled.load()


def test_a_wrong_signature_installs_nothing(tmp_path: Path) -> None:
    spec, archive = read_folder(STATS)
    store = ComponentStore(tmp_path / "components")
    signer, other = NodeSigner(Ed25519PrivateKey.generate()), NodeSigner(Ed25519PrivateKey.generate())
    with pytest.raises(BadArtifactSignatureError):
        store.install(
            spec, archive, publisher="p", publisher_key=other.public_key, signature=sign(signer, sha256(archive))
        )
    assert store.installed("stats", "1.0.0") is None
    assert not list((tmp_path / "components").rglob("*.py"))


def write_rows(path: Path, x: np.ndarray) -> LocalDataset:
    lines = ["id,a,b"] + [f"{i},{float(r[0])!r},{float(r[1])!r}" for i, r in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")
    return LocalDataset("d", path, {"id": "id", "a": "feature", "b": "feature"})


async def test_installed_stats_pools_mean_and_variance_exactly(tmp_path: Path) -> None:
    store, _ = installed_stats(tmp_path)
    rng = np.random.default_rng(7)
    parts = [rng.normal(loc=i, scale=1 + i, size=(50 + 20 * i, 2)) for i in range(3)]
    roles = {"host": ["h0", "h1", "h2"], "aggregator": ["agg"]}
    hub = LocalHub(roles)

    async def run(me: str, role: str, data: LocalDataset | None) -> Any:
        found = store.installed("stats", "1.0.0")
        assert found is not None
        ctx = JobContext(
            job_id="j",
            me=me,
            role=role,
            roles=roles,
            params=validate_params(found.spec, {"ddof": 1}),
            inputs={"data": data} if data else {},
            channel=hub.channel(me),
            accel=AccelClient.__new__(AccelClient),
            checkpoints=MemoryCheckpoints(),
        )
        return await found.load().run(ctx)

    results = await asyncio.gather(
        *(run(f"h{i}", "host", write_rows(tmp_path / f"h{i}.csv", x)) for i, x in enumerate(parts)),
        run("agg", "aggregator", None),
    )
    whole = np.vstack(parts)
    for r in results:
        np.testing.assert_allclose(r.model["mean"], whole.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(r.model["variance"], whole.var(axis=0, ddof=1), rtol=1e-9)
        assert r.metrics["rows"] == len(whole)


def test_an_artifact_whose_component_json_is_not_the_published_spec_is_refused() -> None:
    spec, archive = read_folder(STATS)
    check_spec_matches(spec, archive)
    other = parse_spec(spec_dict(version="9.9.9"))
    with pytest.raises(MalformedArtifactError, match="not the published spec"):
        check_spec_matches(other, archive)
