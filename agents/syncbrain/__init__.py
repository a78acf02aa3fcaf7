"""SyncBrain: generates strategies and lets none launch without SyncTwin's approval."""

from agents.syncbrain.brain import CampaignRejectedError, SyncBrain
from agents.syncbrain.generator import RuleBasedStrategyGenerator, StrategyGenerator

__all__ = ["CampaignRejectedError", "RuleBasedStrategyGenerator", "StrategyGenerator", "SyncBrain"]
