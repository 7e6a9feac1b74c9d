"""Does the world model plan? The whole loop, measured, in one command:

    python -m vjepa_jax.world_model.measure --workdir=workdir/plan                 # defaults: 5 goals, 12-15 min on 2 CPUs
    python -m vjepa_jax.world_model.measure --workdir=workdir/plan50 --goals=50    # README's table

Per task (configs/world_model/<task>.py): random-exploration episodes (collect.py) -> the
trajectories TFDS dataset -> a V-JEPA encoder pretrained on their frames (the project's own
pretraining, config.pretrain) -> the AC predictor trained on the episodes (trainer.py) ->
closed-loop planning (mpc.py) to `goals` held-out goal images (reset seeds goal_seed + i; the
episodes use seeds seed + i, far below). Conditions:
  cem, gradient                  the trained predictor with each planner
  cem_untrained, gradient_untrained   the same planners, the predictor at its initialisation
  random                         uniform random actions
  oracle                         CEM on the true simulator (the ceiling)
Every stage resumes: rerunning skips what is on disk. Writes WORKDIR/results.json ({task:
{condition: {success (%), final_distance, seconds_per_action, ...}}}), WORKDIR/results.md and
per task strip.png (a planned episode with its goal), energy.png (the energy over the first
action's two dimensions around the executed one, beside the true distance) and budget.png
(success against CEM's budget).
"""
from __future__ import annotations

import json
import os
import time

import jax

from vjepa_jax import config as config_lib
from vjepa_jax import validate
from vjepa_jax.world_model import collect, mpc, planners, trainer

CONDITIONS = ('cem', 'gradient', 'cem_untrained', 'gradient_untrained', 'random', 'oracle')


def plan_config(c, planner: str = 'cem', **cem) -> mpc.PlanConfig:
    p = c.plan
    return mpc.PlanConfig(planner=planner, horizon=p.horizon, frame_step=c.data.frame_step,
                          model_steps=p.model_steps, replan_every=p.replan_every, energy=p.energy,
                          energy_steps=p.energy_steps, warm_start=p.warm_start,
                          proprio_dims=c.predictor.action_dim, imagined_states=p.imagined_states,
                          cem=planners.CEMConfig(**{**p.cem.to_dict(), **cem}),
                          gradient=planners.GradientConfig(**p.gradient.to_dict()))


def prepare_task(c, workdir: str, log=print) -> tuple:
    """Episodes, dataset, encoder, predictor (each stage skipped when done) -> (encoder, predictor,
    untrained, readout (the action read-out, world_model/readout.py, or None))."""
    from vjepa_jax import checkpoint, train
    from vjepa_jax.data import build as build_lib
    t0 = time.time()
    episodes = collect.collect(c.env.name, workdir, c.env.episodes, c.env.steps, c.env.seed, log=log,
                               attraction=c.env.attraction)
    data_dir = os.path.join(workdir, 'data')
    if not os.path.exists(os.path.join(data_dir, 'trajectories')):
        build_lib.build('trajectories', data_dir, manual_dir=episodes)
    log(f'[{c.env.name}] {c.env.episodes} episodes of {c.env.steps} steps, dataset in {data_dir} '
        f'({time.time() - t0:.0f}s)')
    enc_dir = os.path.join(workdir, 'encoder')
    c.pretrain.data.data_dir = data_dir
    total = c.pretrain.train.num_steps or c.pretrain.optim.ipe * c.pretrain.optim.epochs
    ckpt = checkpoint.Checkpointer(os.path.join(enc_dir, 'checkpoints'))
    done = ckpt.latest_step()
    ckpt.close()
    if done is None or done < total:
        t0 = time.time()
        done = int(train.train(c.pretrain, enc_dir, log)['step'])
        if done < total:  # SIGTERM: the checkpoint is saved; planning on a half-trained encoder would mislead
            raise SystemExit(f'pretraining stopped at step {done} of {total} (SIGTERM); rerun the same command to resume')
        log(f'[{c.env.name}] encoder pretrained ({time.time() - t0:.0f}s)')
    c.encoder.workdir = enc_dir
    c.data.update(tfds='trajectories', data_dir=data_dir, episodes='')
    prepared = trainer.prepare(c, log)
    untrained = trainer.build_predictor(c.predictor, prepared[0], c.seed)
    t0 = time.time()
    predictor, final = trainer.train(c, os.path.join(workdir, 'ac'), log, prepared=prepared)
    log(f'[{c.env.name}] AC predictor trained ({time.time() - t0:.0f}s): {final}')
    return prepared[0], predictor, untrained, trainer.load_readout(os.path.join(workdir, 'ac'))


def run_condition(c, name: str, encoder, predictor, untrained, goals: int, record: int = 0, readout=None,
                  **cem) -> dict:
    """One condition on the task's held-out goals (readout: for plan.energy='readout')."""
    envs = [collect.make_env(c.env.name) for _ in range(goals)]
    planner = name.split('_')[0]
    cfg = plan_config(c, planner if planner in ('cem', 'gradient') else 'cem', **cem)
    low, high = mpc.model_bounds(envs[0], cfg.frame_step)
    goal_fn = None
    if name == 'random':
        policy = mpc.random_policy(cfg, low, high)
    elif name == 'oracle':
        policy = mpc.oracle_policy(envs, cfg, low, high)
    else:
        policy = mpc.latent_policy(encoder, untrained if name.endswith('untrained') else predictor, cfg, low, high,
                                   readout)
        goal_fn = lambda g: mpc.goal_tokens(encoder, g)  # noqa: E731
    seeds = [c.plan.goal_seed + i for i in range(goals)]
    return mpc.run_episodes(envs, seeds, policy, cfg, jax.random.key(c.seed), goal_fn=goal_fn, record=record)


def measure_task(task: str, workdir: str, goals: int = 0, conditions=CONDITIONS, budget_sweep: bool = True,
                 config_arg: str | None = None, log=print) -> dict:
    c = config_lib.load_config(f'configs/world_model/{task}.py' + (f':{config_arg}' if config_arg else ''))
    goals = goals or c.plan.goals
    out_dir = os.path.join(workdir, task)
    validate.world_model_config(c, out_dir)
    encoder, predictor, untrained, readout = prepare_task(c, out_dir, log)
    results, episodes = {}, {}
    for name in conditions:
        if name == 'oracle' and not mpc.can_simulate(collect.make_env(c.env.name)):
            log(f'[{task}] oracle: left out ({c.env.name} has no batched simulator and does not deep-copy)')
            continue
        t0 = time.time()
        r = run_condition(c, name, encoder, predictor, untrained, goals, record=1, readout=readout)
        episodes[name] = r
        results[name] = {k: r[k] for k in ('success', 'final_distance', 'seconds_per_action')}
        results[name].update(goals=goals, wall_s=round(time.time() - t0, 1))
        log(f'[{task}] {name}: success {r["success"]:.0f}% | final distance {r["final_distance"]:.3f} | '
            f'{r["seconds_per_action"]:.3f} s/action | {time.time() - t0:.0f}s')
    from vjepa_jax.world_model import plots
    if 'cem' in episodes:
        plots.strip(episodes['cem'], os.path.join(out_dir, 'strip.png'), f'{task}: CEM, trained predictor')
        cfg = plan_config(c)
        plots.energy_landscape(c, encoder, predictor, cfg, os.path.join(out_dir, 'energy.png'), readout=readout)
    if budget_sweep and 'cem' in conditions:
        sweep = {}
        for samples, iterations in c.plan.budgets:
            r = run_condition(c, 'cem', encoder, predictor, untrained, min(goals, c.plan.budget_goals),
                              readout=readout, samples=samples, iterations=iterations)
            sweep[plots.budget_key(samples, iterations)] = {k: r[k] for k in ('success', 'final_distance',
                                                                              'seconds_per_action')}
            log(f'[{task}] budget {samples} samples x {iterations} iterations: {r["success"]:.0f}%')
        if goals <= c.plan.budget_goals:  # the main run is the sweep's largest budget
            sweep[plots.budget_key(c.plan.cem.samples, c.plan.cem.iterations)] = results['cem']
        results['budget'] = sweep
        plots.budget(sweep, os.path.join(out_dir, 'budget.png'), task)
    return results


def markdown(results: dict) -> str:
    lines = ['| task | condition | success % | final distance | s / action | goals |', '|---|---|---|---|---|---|']
    for task, by in results.items():
        for name, r in by.items():
            if name != 'budget':
                lines.append(f'| {task} | {name} | {r["success"]:.0f} | {r["final_distance"]:.3f} | '
                             f'{r["seconds_per_action"]:.3f} | {r["goals"]} |')
    return '\n'.join(lines) + '\n'


def main(argv):
    from absl import flags
    f = flags.FLAGS
    if not f.workdir:
        raise config_lib.UsageError('pass --workdir=DIR')
    unknown = [t for t in f.tasks if not os.path.exists(config_lib.repo_path(f'configs/world_model/{t}.py'))]
    if unknown:
        raise config_lib.UsageError(f'--tasks: no configs/world_model/{unknown[0]}.py: pass tasks that have a config '
                                    f'there (two_rooms, push, pusht)')
    bad = [n for n in f.conditions if n not in CONDITIONS]
    if bad:
        raise config_lib.UsageError(f'--conditions: {bad[0]!r} is not one of {list(CONDITIONS)}')
    validate.local_workdir(f.workdir, 'measure')
    os.makedirs(f.workdir, exist_ok=True)
    # the conditions that differ only in parameters (trained / untrained) compile the same programs
    jax.config.update('jax_compilation_cache_dir', os.path.join(os.path.abspath(f.workdir), 'jax_cache'))
    path = os.path.join(f.workdir, 'results.json')
    results = json.load(open(path)) if os.path.exists(path) else {}
    t0 = time.time()
    for task in f.tasks:
        results[task] = measure_task(task, f.workdir, f.goals, tuple(f.conditions), f.budget_sweep, f.config_arg,
                                     log=lambda *a, **k: print(*a, **k, flush=True))
        with open(path + '.tmp', 'w') as fh:
            json.dump(results, fh, indent=1)
        os.replace(path + '.tmp', path)
    with open(os.path.join(f.workdir, 'results.md'), 'w') as fh:
        fh.write(markdown(results))
    print(markdown(results))
    print(f'{time.time() - t0:.0f}s; {path}')
    return 0


def define_flags():
    from absl import flags
    config_lib.define_workdir_flag()
    flags.DEFINE_list('tasks', ['two_rooms', 'push'], 'tasks (configs/world_model/<task>.py)')
    flags.DEFINE_integer('goals', 0, 'held-out goals per task (0: the config\'s plan.goals)')
    flags.DEFINE_list('conditions', list(CONDITIONS), 'conditions to run')
    flags.DEFINE_bool('budget_sweep', True, 'also success against CEM\'s budget (budget.png)')
    flags.DEFINE_string('config_arg', None, 'the configs\' :arg (test: seconds-long settings)')


if __name__ == '__main__':
    define_flags()
    config_lib.run(main)

