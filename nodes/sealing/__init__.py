"""Sealing: the sector state machine (Lotus's states and events, damocles' rebuild and
unseal plans) as a pure core, and its shell in the manager process."""
