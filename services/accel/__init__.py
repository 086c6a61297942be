"""The accelerator service: serves Paillier work from its node's private accelerator topics (``accel/`` is the
arithmetic and the client)."""
