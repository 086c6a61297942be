"""Masked, packed gradients come back exact; the round-channel framing refuses truncated input."""

from __future__ import annotations

import numpy as np
import pytest

from accel.client import AccelClient
from accel.errors import MalformedCiphertextError
from accel.keys import generate_keypair
from accel.keystore import KeyStore
from services.executor.algorithms.hetero_lr import codec, masking


@pytest.mark.parametrize("pack", [True, False])
async def test_masked_gradient_unmasks_to_the_exact_gradient(pack: bool) -> None:
    keys = KeyStore.empty()
    owned = keys.add(generate_keypair(1024))
    arbiter = AccelClient.in_process("arbiter", keys)
    party = AccelClient.in_process("party")
    d = np.linspace(-2, 2, 40)
    x = np.random.default_rng(1).normal(size=(40, 23))
    gradient = await party.transpose_dot(await party.encrypt(owned.published, d), x)
    sent, masks = await masking.mask_and_pack(party, gradient, pack)
    assert len(sent) == (-(-23 // masks.slots) if pack else 23)
    assert masks.slots > 1 if pack else masks.slots == 1
    received = codec.vector_of(codec.vector_bytes(sent), owned.published)
    plain, _ = await arbiter.decrypt_mantissas(received)
    masked, _ = codec.ints_of(codec.ints_bytes(masking.unpack(plain, masks.layout())))
    exact, _ = await arbiter.decrypt_mantissas(gradient)
    assert [m - r for m, r in zip(masked, masks.masks, strict=True)] == exact
    np.testing.assert_allclose(masks.unmask(masked), x.T @ d, atol=1e-6)


def test_truncated_frames_are_refused() -> None:
    raw = codec.ints_bytes([1, -2, 3], -5)
    assert codec.ints_of(raw) == ([1, -2, 3], -5)
    with pytest.raises(MalformedCiphertextError):
        codec.ints_of(raw[:-1])
