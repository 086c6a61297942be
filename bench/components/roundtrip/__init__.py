"""The round-trip benchmark component (a Python package, as every installed component is)."""
