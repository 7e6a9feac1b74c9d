"""Planners find the minimum of known energies and respect the action bounds."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vjepa_jax.world_model import planners

TARGET = np.array([[0.3, -0.2], [-0.5, 0.1]], np.float32)  # (H, A)


def quadratic(actions, target=TARGET, weights=(1.0, 4.0)):
    """(S, H, A) -> (S,): a weighted squared distance to target."""
    return jnp.sum((actions - target) ** 2 * jnp.asarray(weights), axis=(-2, -1))


@pytest.mark.parametrize('plan, cfg', [
    (planners.cem, planners.CEMConfig(samples=256, elites=16, iterations=12)),
    (planners.gradient_plan, planners.GradientConfig(restarts=4, steps=200)),
])
def test_planners_find_the_minimum_of_a_quadratic(plan, cfg):
    run = jax.jit(functools.partial(plan, quadratic, cfg=cfg, low=-1.0, high=1.0))
    actions, energy = run(jax.random.key(0))
    np.testing.assert_allclose(actions, TARGET, atol=0.03)
    assert float(energy) < 2e-3
    # a minimum outside the bounds: the plan sits on the nearest bound
    outside = jax.jit(functools.partial(plan, functools.partial(quadratic, target=TARGET * 3), cfg=cfg,
                                        low=-1.0, high=1.0))
    actions, _ = outside(jax.random.key(1))
    assert float(jnp.abs(actions).max()) <= 1.0
    np.testing.assert_allclose(actions, np.clip(TARGET * 3, -1, 1), atol=0.03)
