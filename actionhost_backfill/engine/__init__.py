"""The backfill's flow: plan every decision, then apply it in batches (one applier, throttled)."""
