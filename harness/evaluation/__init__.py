"""Evaluation tooling: backtests, rolling-origin backtests, scoring, threshold tuning, known-truth worlds."""
