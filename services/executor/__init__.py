"""The executor: runs training tasks, round by round, with the components a party has installed."""
