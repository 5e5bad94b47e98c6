"""actionhost-backfill: fill instance_actions_events.host in Nova cell databases."""

__version__ = "0.1.0"
