"""The command line every tool shares: absl flags, a locked config (one-line errors), config
paths resolved from the repository so that commands work from any directory."""
import json
import os

import pytest

from helpers import ROOT, run_tool

pytestmark = pytest.mark.slow  # subprocesses

TINY = 'configs/pretrain/tiny.py'


def test_pretraining_runs_from_another_directory(tmp_path):
    """An absolute --config and a repository-relative one both work with the cwd elsewhere."""
    cwd = tmp_path / 'cwd'
    cwd.mkdir()
    for name, path in (('absolute', os.path.join(ROOT, TINY)), ('relative', TINY)):
        r = run_tool('vjepa_jax.main', f'--config={path}', f'--workdir={tmp_path / name}', '--config.train.num_steps=3',
                     '--config.train.log_every=1', cwd=str(cwd))
        assert r.returncode == 0, r.stderr[-3000:]
        rows = [json.loads(line) for line in open(tmp_path / name / 'metrics.jsonl')]
        assert [row['step'] for row in rows] == [0, 1, 2]
    assert not os.listdir(cwd)
    os.remove(tmp_path / 'relative' / 'loss.png')
    r = run_tool('vjepa_jax.metrics', f'--workdir={tmp_path / "relative"}', '--keys=loss,loss_mask0', cwd=str(cwd))
    assert r.returncode == 0 and os.path.getsize(tmp_path / 'relative' / 'loss.png') > 1000, r.stderr[-2000:]


@pytest.mark.parametrize('module, args', [
    ('vjepa_jax.main', ['--workdir=WORK']),
    ('vjepa_jax.evals.classification', ['--workdir=WORK']),
    ('vjepa_jax.evals.intuitive_physics', ['--workdir=WORK', '--pairs=p.csv', '--random_init']),
    ('vjepa_jax.tools.extract_features', ['--input=x', '--output=x.npy', '--random_init']),
    ('vjepa_jax.tools.convert_torch', ['--checkpoint=x.pth', '--output=WORK']),
])
def test_every_tool_refuses_an_unknown_key_in_one_line(tmp_path, module, args):
    config = 'configs/eval/tiny.py' if 'classification' in module else TINY
    args = [a.replace('WORK', str(tmp_path / 'w')) for a in args]
    r = run_tool(module, f'--config={config}', '--config.optim.no_such_field=1', *args, cwd=str(tmp_path))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "'optim.no_such_field'" in lines[0], r.stderr[-2000:]
    r = run_tool(module, f'--config={config}', '--config.seed=many', *args, cwd=str(tmp_path))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert not os.path.exists(tmp_path / 'w')


def test_a_broken_config_file_is_one_line(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('def get_config(:\n')
    r = run_tool('vjepa_jax.main', f'--config={bad}', f'--workdir={tmp_path / "w"}')
    assert r.returncode != 0 and 'bad.py' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_tool('vjepa_jax.main', '--config=configs/pretrain/nope.py', f'--workdir={tmp_path / "w"}')
    assert r.returncode != 0 and 'nope.py' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
