"""The discrete-event world: clock, simulated ad platforms (Meta, TikTok, Google), their market
and API, and the faults that can be injected. Agents see it only through messages and the API."""
