"""The services a node runs: registry, catalog, components, executor, evidence, accel (one folder each)."""
