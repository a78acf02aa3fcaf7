"""Infrastructure shared by the production workers: shard routing and key names (`shards`), shard
leases in Redis (`leases`). Pure or Redis-only: nothing here knows an agent."""
