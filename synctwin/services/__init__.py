"""Use cases: one function per thing a user does, called by every entry point (CLI, HTTP, feed, demo)."""
