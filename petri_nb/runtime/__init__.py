"""The runtime loop every VM's asyncio work runs on, the two ways onto it (``runs_on_runtime_loop``,
``run_blocking``), the generated blocking twins, argument checking, quiet task abandonment, and
work kept apart from its caller (isolation)."""
