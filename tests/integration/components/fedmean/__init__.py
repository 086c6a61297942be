"""The federated-mean test component (a Python package, as every installed component is)."""
