"""Data: synthetic clips now; TFDS builders and grain pipelines (issue 3)."""
