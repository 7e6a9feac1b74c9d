"""The demo end to end on its test setting (configs/demo.py:test): world, pretraining, probes,
intuitive physics and the report, then a rerun that reuses the world and the pretraining."""
import json
import os

import pytest

pytestmark = pytest.mark.slow  # end to end


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    from vjepa_jax import demo
    from vjepa_jax.config import load_config
    workdir = str(tmp_path_factory.mktemp('demo'))
    config = load_config('configs/demo.py:test')
    lines = []
    out = demo.run(config, workdir, log=lines.append)
    return workdir, config, out, lines


def test_demo_writes_the_report(demo_run):
    from vjepa_jax.worlds import physics
    from vjepa_jax.models.vit import VIT_VARIANTS
    workdir, config, out, lines = demo_run
    for png in ('loss', 'masks', 'probes', 'pair', 'surprise_pretrained', 'surprise_random'):
        assert os.path.getsize(os.path.join(workdir, f'{png}.png')) > 1000, png
    report = open(out['report']).read()
    assert '| probe: num_objects (top-1 %) |' in report and '| physics: all (pairwise %) |' in report
    summary = json.load(open(os.path.join(workdir, 'summary.json')))
    width = VIT_VARIANTS[config.model.variant]['embed_dim']
    assert '| effective rank of the validation tokens |' in report
    assert all(1.0 <= summary['effective_rank'][name] <= width for name in ('pretrained', 'random'))
    assert summary['effective_rank']['pretrained'] != summary['effective_rank']['random']
    for name in ('pretrained', 'random'):
        assert set(summary['probes'][name]) == {'num_objects'}
        assert 0.0 <= summary['probes'][name]['num_objects'] <= 100.0
        physics_summary = summary['physics'][name]
        assert set(physics_summary) == set(physics.VIOLATIONS) | {'all'}
        per_kind = config.demo.world.pairs_per_kind  # a vanish quadruplet is 2 pairs of one group
        assert physics_summary['all']['pairs'] == (len(physics.VIOLATIONS) + 1) * per_kind
        assert physics_summary['all']['groups'] == len(physics.VIOLATIONS) * per_kind
        results = json.load(open(os.path.join(workdir, 'physics', name, 'results.json')))
        assert {r['property'] for r in results} == set(physics.VIOLATIONS)
    # the pretraining ran the configured steps; the random model is the pretraining's own init
    metrics = [json.loads(line) for line in open(os.path.join(workdir, 'pretrain', 'metrics.jsonl'))]
    assert metrics[-1]['step'] + 1 == config.optim.ipe * config.optim.epochs
    assert any(line.startswith('| measure | pretrained | random init | chance |') for line in lines)


def test_demo_rerun_reuses_world_and_pretraining(demo_run):
    """Same seed, same workdir: nothing is regenerated or retrained, and every figure repeats."""
    from vjepa_jax import demo
    workdir, config, out, _ = demo_run
    videos = os.path.join(workdir, 'world', 'train', '00000.mp4')
    mtime = os.path.getmtime(videos)
    lines = []
    again = demo.run(config, workdir, log=lines.append)
    assert os.path.getmtime(videos) == mtime
    assert any('reusing' in line for line in lines) and any('finished earlier' in line for line in lines)
    assert again['probes'] == out['probes']
    assert again['physics'] == out['physics']
    assert again['effective_rank'] == out['effective_rank']


def test_an_interrupted_pretraining_stops_the_demo(demo_run, tmp_path):
    """SIGTERM during pretraining: the checkpoint is saved and the demo exits asking for a rerun
    instead of probing a half-trained encoder."""
    import signal
    import threading
    import time
    from vjepa_jax import checkpoint, demo
    _, config, _, _ = demo_run  # its data_dir: the world the fixture built

    def guard(*_):  # pytest itself must never get the signal
        pass
    previous = signal.signal(signal.SIGTERM, guard)

    def signal_once_training():  # the trainer's handler replaces the guard while it trains
        while signal.getsignal(signal.SIGTERM) is guard:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=signal_once_training, daemon=True).start()
    try:
        with pytest.raises(SystemExit, match='rerun the same command'):
            demo.pretrain(config, str(tmp_path), log=lambda *_: None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    ckpt = checkpoint.Checkpointer(str(tmp_path / 'pretrain' / 'checkpoints'))
    assert 1 <= ckpt.latest_step() < config.optim.ipe * config.optim.epochs
    ckpt.close()


@pytest.mark.slow
def test_demo_command_line_overrides_are_checked(tmp_path):
    """--config.a.b=v sets any field; an unknown key or a value of the wrong type stops the demo
    with a one-line error before anything is written."""
    from helpers import run_tool
    workdir = str(tmp_path / 'demo')
    for argv, expected in ((['--config.optim.no_such_field=1'], 'no_such_field'),
                           (['--config.optim.lr=fast'], 'optim.lr=fast'),
                           (['--config.optim.lr'], 'optim.lr'),
                           (['--config.demo.world.occluder_width=10.0'],  # narrower than an object
                            'demo.world.occluder_width=10.0 does not hide an object of radius')):
        r = run_tool('vjepa_jax.demo', f'--workdir={workdir}', '--config=configs/demo.py:test', *argv)
        assert r.returncode != 0 and expected in r.stderr, r.stderr[-2000:]
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not os.path.exists(os.path.join(workdir, 'world'))


def test_demo_from_another_directory_repeats_the_summary(demo_run, tmp_path):
    """`python -m vjepa_jax.demo` started outside the repository (the config named relative to
    the repository) runs the same demo from scratch and reports the same figures."""
    from helpers import run_tool
    workdir, config, _, _ = demo_run
    elsewhere = tmp_path / 'cwd'
    elsewhere.mkdir()
    r = run_tool('vjepa_jax.demo', f'--workdir={tmp_path / "demo"}', '--config=configs/demo.py:test',
                 cwd=str(elsewhere), devices=8)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not os.listdir(elsewhere)  # nothing written to the working directory

    def figures(path):
        summary = json.load(open(os.path.join(path, 'summary.json')))
        return {k: v for k, v in summary.items() if k not in ('seconds', 'effective_rank')}, summary['effective_rank']
    (again, again_rank), (first, first_rank) = figures(tmp_path / 'demo'), figures(workdir)
    assert again == first  # the probes and every physics figure, exactly
    # the rank is a float32 covariance reduced over every cached token and an eigvalsh: another
    # process may round it differently in the last digits (seen: 47.69168 against 47.69161)
    assert again_rank.keys() == first_rank.keys()
    for name in first_rank:
        assert again_rank[name] == pytest.approx(first_rank[name], rel=1e-5), name
