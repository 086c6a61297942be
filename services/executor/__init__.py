"""The executor: runs jobs, round by round, with the components a party has installed."""
