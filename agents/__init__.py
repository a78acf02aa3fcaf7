"""The Council: each agent owns one job and talks to the others only through messages and models."""
