"""A whole local federation from one file: ``interfed federation up FILE`` (for teams trying interfed)."""
