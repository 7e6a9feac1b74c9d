"""Pictures of planning (PNG, matplotlib Agg): a planned episode as a strip, the energy landscape
around an executed action, success against the planner's budget."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def strip(result: dict, path: str, title: str, max_frames: int = 12) -> str:
    """The first recorded episode: observations after each model step, then the goal image."""
    plt = _plt()
    frames = result['frames'][0]
    idx = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int))
    n = len(idx) + 1
    fig, axes = plt.subplots(1, n, figsize=(1.3 * n, 1.6))
    for ax, i in zip(axes, idx):
        ax.imshow(frames[i])
        ax.set_title(f't={i}', fontsize=7)
    axes[-1].imshow(result['goal_images'][0])
    axes[-1].set_title('goal', fontsize=7, color='green')
    for ax in axes:
        ax.axis('off')
    ok = 'success' if result['successes'][0] else 'failure'
    fig.suptitle(f'{title} ({ok}, final distance {result["distances"][0]:.3f})', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def energy_landscape(c, encoder, predictor, cfg, path: str, goal_index: int = 0, n: int = 21, readout=None) -> str:
    """For the first held-out task: the world model's energy of one model step over a grid of the
    action's two dimensions, beside the true distance after executing it, with the CEM choice."""
    from vjepa_jax.world_model import collect, mpc, objective
    plt = _plt()
    env = collect.make_env(c.env.name)
    obs, info = env.reset(seed=c.plan.goal_seed + goal_index)
    low, high = mpc.model_bounds(env, cfg.frame_step)
    a0 = np.linspace(low[0], high[0], n)
    a1 = np.linspace(low[1], high[1], n)
    grid = np.stack(np.meshgrid(a0, a1, indexing='ij'), -1).reshape(-1, 1, 2).astype(np.float32)
    z_goal = mpc.goal_tokens(encoder, info['goal_image'][None])[0]
    z_now = mpc.goal_tokens(encoder, obs[None])[0]
    state = jnp.asarray(info['state'][:cfg.proprio_dims], jnp.float32)

    @jax.jit
    def energies(actions):
        z = objective.rollout(predictor, jnp.broadcast_to(z_now, (len(actions), *z_now.shape)), actions,
                              jnp.broadcast_to(state, (len(actions), 1, state.shape[0])))
        return objective.energy(z[:, -1], z_goal, cfg.energy, encoder.grid[-2:], readout)
    latent = np.asarray(energies(jnp.asarray(grid))).reshape(n, n)
    try:
        true = mpc.true_distances(env, grid, dataclasses.replace(cfg, energy_steps='final'))
    except TypeError:  # no batched simulator, and it does not deep-copy (pymunk: PushT)
        true = np.full(len(grid), np.nan)
    one = mpc.latent_policy(encoder, predictor, dataclasses.replace(cfg, horizon=1), low, high, readout)
    chosen = np.asarray(one(jnp.asarray(obs[None]), jnp.asarray(info['state'][None], jnp.float32), z_goal[None],
                            jax.random.key(0)))[0, 0]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    extent = (low[1], high[1], high[0], low[0])  # rows: action dim 0 (y), columns: dim 1 (x)
    for ax, values, title in ((axes[0], latent, f'world-model energy ({cfg.energy})'),
                              (axes[1], true.reshape(n, n), 'true distance to the goal after it')):
        im = ax.imshow(values, extent=extent, cmap='viridis', aspect='auto')
        ax.plot(chosen[1], chosen[0], 'r*', ms=12, label='CEM choice (horizon 1)')
        best = np.unravel_index(np.argmin(values), values.shape)
        ax.plot(a1[best[1]], a0[best[0]], 'wx', ms=9, label='grid minimum')
        ax.set_xlabel('action x (summed over a model step)')
        ax.set_ylabel('action y')
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax)
    axes[0].legend(fontsize=7, loc='lower left')
    fig.suptitle(f'{c.env.name}: one model step from the first held-out start', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def budget_key(samples: int, iterations: int) -> str:
    """The sweep's key of one CEM budget: 'SAMPLESxITERATIONS' (budget() sorts by it)."""
    return f'{samples}x{iterations}'


def budget(sweep: dict, path: str, task: str) -> str:
    """Success (%) and planning time against CEM's samples x iterations; sweep keys from budget_key."""
    plt = _plt()
    names = sorted(sweep, key=lambda k: [int(n) for n in k.split('x')])  # smallest budget first
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(range(len(names)), [sweep[k]['success'] for k in names], 'o-')
    for i, k in enumerate(names):
        ax.annotate(f'{sweep[k]["seconds_per_action"]:.2f}s', (i, sweep[k]['success']), fontsize=7,
                    textcoords='offset points', xytext=(0, 6), ha='center')
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel('CEM samples x iterations (label: seconds per action)')
    ax.set_ylabel('success %')
    ax.set_ylim(-5, 105)
    ax.set_title(f'{task}: success against planning budget', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
