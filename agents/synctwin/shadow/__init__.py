"""Shadow mode: what a rejected campaign would have earned, and its agent."""
