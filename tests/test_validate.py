"""Bad input to any command (pretraining, the AC trainer, planning, probes, builds) ends in one
line naming the field and the fix, with nothing written."""
import os
import subprocess
import sys

import pytest

from vjepa_jax import train
from vjepa_jax.config import UsageError, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRETRAIN, WORLD_MODEL, PROBES = 'pretrain/tiny.py', 'world_model/two_rooms.py:test', 'eval/tiny.py'
BAD = [(PRETRAIN, 'model.dtype', 'float64', r'--config.model.dtype=.float64. is not one of \['),
       (PRETRAIN, 'model.variant', 'gigantic', r'--config.model.variant=.gigantic. is not one of \['),
       (PRETRAIN, 'model.pos_embed', 'learned', r"is not one of \['rope', 'sincos'\]"),
       (PRETRAIN, 'model.attention_impl', 'fast', 'is not one of'),
       (PRETRAIN, 'train.log_every', 0, r'--config.train.log_every=0: must be a number >= 1'),
       (PRETRAIN, 'train.num_steps', -5, r'--config.train.num_steps=-5: must be a number >= 0'),
       (PRETRAIN, 'data.global_batch_size', 0, 'must be a number >= 1'),
       (PRETRAIN, 'checkpoint.every_steps', -1, 'must be a number >= 1'),
       (PRETRAIN, 'model.img_size', 70, 'img_size=70 is not a multiple of model.patch_size=8'),
       (WORLD_MODEL, 'predictor.dtype', 'float64', r"--config.predictor.dtype='float64' is not one of \["),
       (WORLD_MODEL, 'predictor.attention_impl', 'fast', 'is not one of'),
       (WORLD_MODEL, 'data.num_frames', 1, r'--config.data.num_frames=1: must be a number >= 2'),
       (WORLD_MODEL, 'loss.auto_steps', 0, 'must be a number >= 1'),
       (WORLD_MODEL, 'predictor.num_heads', 5, 'embed_dim=64 is not a multiple of predictor.num_heads=5'),
       (WORLD_MODEL, 'plan.energy', 'l2', r"is not one of \['l1', 'l1_pyramid', 'readout'\]"),
       (WORLD_MODEL, 'loss.readout_weight', -0.1, 'loss.readout_weight=-0.1 is negative'),
       (WORLD_MODEL, 'loss.rollout_states', 'true', r"is not one of \['integrated', 'readout', 'recorded'\]"),
       (WORLD_MODEL, 'plan.imagined_states', 'true', r"is not one of \['integrated', 'readout'\]"),
       (WORLD_MODEL, 'plan.replan_every', 6, r'plan.replan_every=6: must lie in \[0, data.frame_step=5\]'),
       (WORLD_MODEL, 'predictor.state_fourier', -1, r'predictor.state_fourier=-1: must be a number >= 0'),
       (WORLD_MODEL, 'train.steps_per_call', 0, 'must be a number >= 1'),
       (WORLD_MODEL, 'env.attraction', 1.5, r'env.attraction=1.5: must lie in \[0, 1\]'),
       (WORLD_MODEL, 'data.cache_tokens', False, 'the action read-out .* is fitted on cached tokens'),
       (WORLD_MODEL, 'plan.cem.elites', 500, 'plan.cem.elites=500 is more than plan.cem.samples=16'),
       (PROBES, 'probe.style', 'vjepa3', r"--config.probe.style='vjepa3' is not one of \['vjepa1', 'vjepa2'\]"),
       (PROBES, 'encoder.which', 'teacher', 'is not one of'),
       (PROBES, 'optim.epochs', 0, 'must be a number >= 1'),
       (PROBES, 'optim.lr', (), 'give at least one value each')]


def runner(config_file):
    """The entry function a config is given to: pretraining, the AC trainer, the probes."""
    from vjepa_jax.evals import probe_eval
    from vjepa_jax.world_model import trainer
    return {PRETRAIN: train.train, WORLD_MODEL: trainer.train, PROBES: probe_eval.run}[config_file]


@pytest.mark.parametrize('config_file,key,value,message', BAD, ids=[f'{b[0].split("/")[0]}-{b[1]}' for b in BAD])
def test_bad_config_values_stop_before_the_workdir_exists(tmp_path, config_file, key, value, message):
    config = load_config(os.path.join(ROOT, 'configs', config_file), {key: value})
    with pytest.raises(UsageError, match=message) as e:
        runner(config_file)(config, str(tmp_path / 'run'))
    assert '\n' not in str(e.value)
    assert not (tmp_path / 'run').exists()


def test_a_rollout_on_read_out_states_alone_asks_for_cached_tokens(tmp_path):
    """loss.rollout_states='readout' is the only use of the read-out: it is still fitted, so
    streamed windows (data.cache_tokens=False) are refused in one line."""
    from vjepa_jax import validate
    no_other_use = {'data.cache_tokens': False, 'loss.readout_weight': 0.0, 'plan.energy': 'l1',
                    'plan.imagined_states': 'integrated'}
    path = os.path.join(ROOT, 'configs', WORLD_MODEL)
    assert not validate.wants_readout(load_config(path, {**no_other_use, 'loss.rollout_states': 'recorded'}))
    config = load_config(path, {**no_other_use, 'loss.rollout_states': 'readout'})
    with pytest.raises(UsageError, match='is fitted on cached tokens'):
        runner(WORLD_MODEL)(config, str(tmp_path / 'run'))
    assert not (tmp_path / 'run').exists()


def test_command_line_bad_inputs_are_one_line_with_exit_status_1(tmp_path):
    broken = tmp_path / 'broken.py'
    broken.write_text('def get_config(:\n')
    a_file = tmp_path / 'a_file'
    a_file.write_text('')
    cases = [([f'--config={broken}', f'--workdir={tmp_path}/w1'], f'error: {broken} line 1'),
             (['--config=configs/pretrain/tiny.py', f'--workdir={a_file}'], f'error: --workdir={a_file} is a file'),
             (['--config=configs/pretrain/tiny.py', f'--workdir={tmp_path}/w2', '--config.model.dtype=float64'],
              "error: --config.model.dtype='float64' is not one of"),
             (['--config=configs/pretrain/tiny.py', f'--workdir={tmp_path}/w3', '--config.train.num_steps=-5'],
              'error: --config.train.num_steps=-5: must be a number >= 0')]
    for args, start in cases:
        run = subprocess.run([sys.executable, '-m', 'vjepa_jax.main', *args], capture_output=True, text=True,
                             timeout=300, cwd=ROOT)
        lines = [ln for ln in run.stderr.strip().splitlines() if ln.strip()]
        assert run.returncode == 1 and lines[-1].startswith(start), (args, run.stderr[-1500:])
        assert 'Traceback' not in run.stderr, run.stderr[-1500:]
    assert not any((tmp_path / w).exists() for w in ('w1', 'w2', 'w3'))



def test_a_build_whose_every_file_is_bad_names_them_in_one_line(tmp_path):
    """Every listed file unusable: one line with the count and the first reason, the list in a log."""
    (tmp_path / 'text.mp4').write_text('not a video\n' * 200)
    (tmp_path / 'list.csv').write_text(f'{tmp_path}/text.mp4 0\n{tmp_path}/missing.mp4 1\n')
    run = subprocess.run([sys.executable, '-m', 'vjepa_jax.data.build', '--builder=video_csv',
                          f'--csv={tmp_path}/list.csv', f'--data_dir={tmp_path}/tfds'],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith('error:')]
    assert run.returncode == 1 and len(errors) == 1 and 'Traceback' not in run.stderr, run.stderr[-2000:]
    log = f'{tmp_path}/tfds/video_csv_build_log.txt'
    assert errors[0].startswith(f'error: video_csv: no usable file in a split; 2 skipped (the first: {tmp_path}/text.mp4')
    assert log in errors[0]
    assert sorted(ln.split('\t')[1] for ln in open(log).read().splitlines()) == [f'{tmp_path}/missing.mp4',
                                                                                 f'{tmp_path}/text.mp4']


def test_other_commands_bad_inputs_are_one_line_with_exit_status_1(tmp_path):
    """The world-model commands and the surprise test: one `error:` line, status 1, no workdir."""
    cases = [(['vjepa_jax.world_model.collect', '--episodes=-3'], 'error: flag --episodes=-3'),
             (['vjepa_jax.world_model.trainer', '--config.predictor.dtype=float64'],
              "error: --config.predictor.dtype='float64' is not one of"),
             (['vjepa_jax.world_model.measure', '--tasks=two_room'], 'error: --tasks: no configs/world_model/two_room.py'),
             (['vjepa_jax.evals.intuitive_physics', '--config=configs/demo.py', '--random_init',
               f'--pairs={tmp_path}/missing.csv'], f'error: pairs list {tmp_path}/missing.csv not found')]
    for n, (args, start) in enumerate(cases):
        run = subprocess.run([sys.executable, '-m', *args, f'--workdir={tmp_path}/w{n}'], capture_output=True,
                             text=True, timeout=300, cwd=ROOT)
        lines = [ln for ln in run.stderr.strip().splitlines() if ln.strip()]
        assert run.returncode == 1 and lines[-1].startswith(start), (args, run.stderr[-1500:])
        assert 'Traceback' not in run.stderr and not (tmp_path / f'w{n}').exists(), (args, run.stderr[-1500:])
    # the evaluators write local files: a remote workdir is refused before anything is written
    for args in (['vjepa_jax.world_model.measure'],
                 ['vjepa_jax.evals.intuitive_physics', '--config=configs/demo.py', '--random_init',
                  f'--pairs={tmp_path}/missing.csv']):
        run = subprocess.run([sys.executable, '-m', *args, '--workdir=gs://bucket/eval'], capture_output=True,
                             text=True, timeout=300, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT))
        lines = [ln for ln in run.stderr.strip().splitlines() if ln.strip()]
        assert run.returncode == 1 and lines[-1].startswith('error: --workdir=gs://bucket/eval: ') and \
            'pass a local --workdir' in lines[-1], (args, run.stderr[-1500:])
        assert not (tmp_path / 'gs:').exists()
