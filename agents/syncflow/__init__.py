"""SyncFlow: deploys approved campaigns (and, with the world, bids, paces and guards them)."""

from agents.syncflow.deployer import InMemoryDeployer, UnapprovedDeployment

__all__ = ["InMemoryDeployer", "UnapprovedDeployment"]
