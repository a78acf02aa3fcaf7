"""SyncTwin's real-to-sim mirror: the deviation test, the plausibility bounds, its agent."""
