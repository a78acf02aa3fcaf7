"""SyncTwin: a digital twin that protects ad budgets.

This small package holds what every part shares: the typed models at the boundaries,
configuration, input parsing with clear errors, and the command line. The agents, the
world and the scenarios live in their own top-level packages beside it.
"""

__version__ = "0.1.0"
