"""Paillier arithmetic and the accelerator service (to come)."""
