"""The engine: refresh live state, plan against it, and walk a plan to apply it."""
