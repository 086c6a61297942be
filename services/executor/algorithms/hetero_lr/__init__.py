"""Hetero (vertical) logistic regression: guest with labels, hosts with features, arbiter with the Paillier key."""
