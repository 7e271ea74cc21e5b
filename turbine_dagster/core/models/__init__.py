"""The two model kinds, cross-fitting and checkpoints."""
