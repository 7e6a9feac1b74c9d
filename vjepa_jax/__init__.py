"""vjepa-jax: V-JEPA and V-JEPA 2 in JAX/Flax."""
__version__ = '0.1.0'
