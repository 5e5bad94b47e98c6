"""Where run state lives: the state schema's location and tables, runs, the lease, the audit."""
