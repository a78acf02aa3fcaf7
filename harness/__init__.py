"""Run scenarios in-process, collect traces, check expectations; the pytest plugin."""
