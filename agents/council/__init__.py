"""The Council on a bid stream: its one composition (build) and the ports it runs on (memory, Redis)."""
