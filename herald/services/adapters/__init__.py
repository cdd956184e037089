"""herald-adapters: delivers jobs through one plug-in per channel and records each attempt."""
