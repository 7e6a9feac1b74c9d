"""The world-model measurement end to end, at its seconds-long test setting: episodes -> the
trajectories dataset -> a V-JEPA encoder pretrained on their frames -> the AC predictor ->
closed-loop planning under every condition, results.json and the pictures."""
import json
import os

import pytest

from helpers import run_tool

pytestmark = pytest.mark.slow


def test_measure_writes_every_condition_and_resumes(tmp_path):
    from vjepa_jax.world_model import measure
    run = run_tool('vjepa_jax.world_model.measure', f'--workdir={tmp_path}', '--tasks=two_rooms',
                   '--config_arg=test', cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.load(open(tmp_path / 'results.json'))
    by = results['two_rooms']
    assert set(measure.CONDITIONS) <= set(by) and 'budget' in by
    for name in measure.CONDITIONS:
        r = by[name]
        assert 0.0 <= r['success'] <= 100.0 and r['final_distance'] >= 0.0 and r['seconds_per_action'] >= 0.0
        assert r['goals'] == 2
    for png in ('strip.png', 'energy.png', 'budget.png'):
        assert os.path.getsize(tmp_path / 'two_rooms' / png) > 1000
    assert '| two_rooms | oracle |' in (tmp_path / 'results.md').read_text()
    # a rerun finds every stage on disk: no collection, build, pretraining or AC training again
    again = run_tool('vjepa_jax.world_model.measure', f'--workdir={tmp_path}', '--tasks=two_rooms',
                     '--config_arg=test', '--conditions=random', '--nobudget_sweep', cwd=str(tmp_path))
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert 'encoder pretrained' not in log and 'resumed from step' in log and 'random: success' in log
