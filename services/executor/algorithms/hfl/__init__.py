"""Horizontal federated learning (FedAvg) with optional secure aggregation; the component is ``component:FedAvg``."""
