"""Freshet's stream processor: topology, validation, windows, sinks and the CLI."""
