"""ECDH-PSI over X25519: sample alignment for vertical FL (the BFIA open algorithm protocol's flow)."""
