"""Federated statistics: the pooled mean and variance of every feature over the hosts' datasets."""
