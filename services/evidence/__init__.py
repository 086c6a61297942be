"""The evidence service: a Merkle log (RFC 9162 hashing) of what the federation did, and its auditor."""
