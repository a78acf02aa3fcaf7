"""SyncTwin the agent: the pre-launch gate (Monte Carlo), later the chaos drills and the mirror."""
