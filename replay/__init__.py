"""Bounded replays of a topic through the same topology, and live/replay parity."""
