"""Simulated worlds: the physics world of the demo (physics.py, its TFDS builder and fact cues)."""
