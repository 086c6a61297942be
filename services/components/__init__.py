"""The component store: algorithm specs and signed, content-addressed artifacts, installed into each node's home."""
