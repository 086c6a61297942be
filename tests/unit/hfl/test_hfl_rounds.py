"""The HFL component's rounds on LocalChannel: dropouts, quorum, resuming from checkpoints, model gradients."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from hfl_data import datasets, load, roles, split

from services.executor.algorithms.hfl import secure
from services.executor.algorithms.hfl.config import Config, ConfigError
from services.executor.algorithms.hfl.local import LocalJob
from services.executor.algorithms.hfl.models import ModelSpec
from services.executor.api import MemoryCheckpoints, QuorumError

BASE = {"model": "logreg", "classes": 2, "epochs": 5, "learning_rate": 0.5, "paillier_bits": 1024, "quorum": 3}


def job(tmp_path: Path, parties: int = 4, **params: object) -> LocalJob:
    data = load("breast_cancer")
    return LocalJob(roles(parties), {**BASE, **params}, datasets(tmp_path, data, split(data, parties, "label")))


def flat(results: dict, node: str = "agg") -> np.ndarray:  # type: ignore[type-arg]
    return np.concatenate([t.reshape(-1) for t in results[node].model.values()])


def p3_misses_round_3(sender: str, tag: str, round_no: int) -> bool:
    return sender == "p3" and tag == "update" and round_no == 3


@pytest.mark.parametrize("scheme", ["masks", "paillier"])
def test_a_party_that_misses_a_round_is_dropped_and_secure_aggregation_still_matches_plaintext(
    tmp_path: Path, scheme: str
) -> None:
    def run(secure: str, lost: object) -> np.ndarray:
        j = job(tmp_path, secure_aggregation=secure)
        # the deadline only has to be missed by p3, never by a busy machine running the others
        j.round_deadline, j.lost = 3.0, lost  # type: ignore[assignment]
        return flat(asyncio.run(j.run()))

    everyone = run("none", lambda *_: False)
    plain = run("none", p3_misses_round_3)
    secured = run(scheme, p3_misses_round_3)
    assert np.max(np.abs(plain - everyone)) > 1e-3, "the dropout changed round 3's average"
    assert np.max(np.abs(plain - secured)) <= 1e-6


def test_masks_abort_when_a_survivor_also_misses_the_reveal(tmp_path: Path) -> None:
    """Mask recovery needs every survivor's seeds: a second dropout during it aborts the round, with that reason."""
    j = job(tmp_path, secure_aggregation="masks")
    j.round_deadline = 2.0
    j.lost = lambda sender, tag, round_no: (
        p3_misses_round_3(sender, tag, round_no) or (sender == "p2" and tag == "reveal")
    )
    with pytest.raises(QuorumError, match=r"round 3 \(reveal\)"):
        asyncio.run(j.run())


def test_an_arbiter_can_hold_the_paillier_key_instead_of_a_party(tmp_path: Path) -> None:
    plain = job(tmp_path, secure_aggregation="none")
    secured = job(tmp_path, secure_aggregation="paillier")
    secured.roles = {**secured.roles, "arbiter": ["keeper"]}
    results = asyncio.run(secured.run())
    assert results["keeper"].model == {}
    assert np.max(np.abs(flat(asyncio.run(plain.run())) - flat(results))) <= 1e-6


@pytest.mark.parametrize("scheme", ["none", "masks", "paillier"])
def test_below_the_quorum_the_round_aborts_with_quorum_error(tmp_path: Path, scheme: str) -> None:
    j = job(tmp_path, secure_aggregation=scheme)
    j.round_deadline = 2.0
    j.lost = lambda sender, tag, round_no: sender in {"p2", "p3"} and tag == "update" and round_no == 2
    with pytest.raises(QuorumError, match=r"round 2 \(update\): 2 of the 3 parties needed"):
        asyncio.run(j.run())


@pytest.mark.parametrize("scheme", ["none", "masks", "paillier"])
def test_a_run_resumed_from_round_checkpoints_gives_exactly_the_same_model(tmp_path: Path, scheme: str) -> None:
    first = job(tmp_path, secure_aggregation=scheme)
    whole = asyncio.run(first.run())
    resumed = job(tmp_path, secure_aggregation=scheme)
    # every node restarts from its checkpoint of round 2 (the secret keys of round 0 included)
    resumed.checkpoints = {
        node: MemoryCheckpoints([(r, state) for r, state in saved.saved if r <= 2])
        for node, saved in first.checkpoints.items()
    }
    again = asyncio.run(resumed.run())
    for node in ("agg", "p0", "p3"):
        assert np.array_equal(flat(whole, node), flat(again, node))
    assert all(c.saved[-1][0] == 5 for c in resumed.checkpoints.values())


def test_pairwise_masks_hide_each_update_and_cancel_in_the_sum() -> None:
    """Both ends of a pair derive one seed per round; one masked update is noise, the pair's sum is exact."""
    key_a, key_b = secure.new_mask_key(), secure.new_mask_key()
    seed_ab = secure.round_seed(key_a, secure.public_bytes(key_b), "job", 1)
    assert seed_ab == secure.round_seed(key_b, secure.public_bytes(key_a), "job", 1)
    assert seed_ab != secure.round_seed(key_a, secure.public_bytes(key_b), "job", 2)
    update = np.linspace(-1, 1, 1000)
    masked = secure.apply_mask(secure.to_fixed(update), secure.expand(seed_ab, 1000), 1)
    other = secure.apply_mask(secure.to_fixed(-update), secure.expand(seed_ab, 1000), -1)
    assert np.abs(secure.from_fixed(masked) - update).min() > 1.0  # the mask hides every value
    total = secure.apply_mask(masked, other, 1)
    assert np.max(np.abs(secure.from_fixed(total))) <= 2**-31


def test_bad_roles_and_parameters_are_refused_with_a_reason() -> None:
    with pytest.raises(ConfigError, match="at least two data parties"):
        Config.of({}, {"guest": ["a"], "aggregator": ["z"]}, 0, "j")
    with pytest.raises(ConfigError, match="secure_aggregation must be one of"):
        Config.of({"secure_aggregation": "rot13"}, {"guest": ["a"], "host": ["b"], "aggregator": ["z"]}, 0, "j")
    with pytest.raises(ConfigError, match="quorum of at least 2"):
        Config.of(
            {"secure_aggregation": "masks", "quorum": 1}, {"guest": ["a"], "host": ["b"], "aggregator": ["z"]}, 0, "j"
        )


@pytest.mark.parametrize(("kind", "classes"), [("logreg", 2), ("logreg", 4), ("mlp", 3)])
def test_model_gradients_match_finite_differences(kind: str, classes: int) -> None:
    rng = np.random.default_rng(1)
    spec = ModelSpec(kind, 5, classes, hidden=4)
    x, y = rng.normal(size=(20, 5)), rng.integers(0, classes, size=20)
    w = spec.init(3) + rng.normal(scale=0.1, size=spec.size)
    _, grad = spec.loss_and_gradient(w, x, y)
    eps = 1e-6
    numeric = np.array(
        [
            (spec.loss_and_gradient(w + eps * e, x, y)[0] - spec.loss_and_gradient(w - eps * e, x, y)[0]) / (2 * eps)
            for e in np.eye(spec.size)
        ]
    )
    assert np.max(np.abs(numeric - grad)) < 1e-6
