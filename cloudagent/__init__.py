"""CloudAgent's contract: what the provider sends and accepts, as plain Python (no Django models, no RQ)."""
