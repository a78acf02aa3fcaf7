"""SyncTwin's pre-launch gate: the response curve, the Monte Carlo, the decision, its agent."""
