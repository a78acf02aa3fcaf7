"""Scenarios more than one test module runs (kept in one place)."""

# portfolio_10's thin-margin campaign alone: ~180 orders an hour at a 35% gross margin, ~28% above
# break-even, in a calm market; a campaign-scoped CPM shock at 4h turns it about 15% unprofitable.
SHOCK: dict = {
    "name": "thin_margin_shock",
    "description": "a thin-margin campaign and a CPM shock",
    "duration": "9h",
    "world": {"tick": "1m", "platforms": {"meta": {"cpm_drift_sd": 0.005}}},
    "clients": [{"id": "kettle", "history": {"generate": {
        "platform": "meta", "daily_spend": 1200, "rate_factors": {"cpm": 0.7, "ctr": 1.2, "cvr": 1.6, "aov": 0.163}}}}],
    "campaigns": [{"id": "thin", "client": "kettle", "launch_at": "0s", "strategy": {
        "platform": "meta", "audience_size": 8000000, "cvr": 0.025, "daily_budget": 12000, "gross_margin": 0.35}}],
    "faults": [{"id": "shock", "kind": "cpm_shock", "at": "4h", "campaign": "thin", "multiplier": 1.5}],
    "expectations": [
        {"expect": "gate", "campaign": "thin", "decision": "APPROVED"},
        {"expect": "paused", "campaign": "thin", "reason": "MARGIN_GUARDIAN", "after": "shock", "within": "4h"}],
}
