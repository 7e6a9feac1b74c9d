"""A remote (gs://) workdir's metrics after a hard kill: the rows up to the checkpoint the run
resumes from are there, the rest are redone, no gap and no duplicate. No bucket is reachable here:
etils' mock_epath maps gs:// paths onto a local folder (the same epath calls the real run makes)."""
import shutil

from etils.epath import testing

from vjepa_jax import metrics


def test_remote_metrics_reach_the_checkpoint_after_a_hard_kill(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # mock_epath keeps gs://bucket/... under ./gs:/bucket/...
    monkeypatch.setattr(metrics.tempfile, 'gettempdir', lambda: str(tmp_path / 'local'))
    workdir = 'gs://bucket/run'
    with testing.mock_epath():
        first = metrics.MetricsWriter(workdir, tensorboard=False, sync_every_s=1e9)  # no timed sync
        for step in range(10):
            first.write(step, {'loss': step})
            if step + 1 == 6:  # a checkpoint at step 6: the trainers sync first
                first.sync()
        # SIGKILL: no close; the run resumes from checkpoint 6 on another machine (no local mirror)
        shutil.rmtree(tmp_path / 'local')
        second = metrics.MetricsWriter(workdir, start_step=6, tensorboard=False, sync_every_s=1e9)
        for step in range(6, 10):
            second.write(step, {'loss': step})
        second.close()
        rows = metrics.read_jsonl(second.path)
    remote = metrics.read_jsonl(str(tmp_path / 'gs:' / 'bucket' / 'run' / 'metrics.jsonl'))
    assert [r['step'] for r in rows] == [r['step'] for r in remote] == list(range(10))


def test_the_ac_read_out_of_a_remote_workdir_lands_in_the_bucket_and_is_read_back(tmp_path, monkeypatch):
    """The AC trainer's WORKDIR/readout.npy goes through the same file layer as the checkpoints:
    on a gs:// workdir it is written to the bucket (not to a local folder named 'gs:'), and a
    resumed run reads that one back instead of fitting again."""
    import ml_collections
    import numpy as np

    from vjepa_jax.world_model import trainer
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    arrays = {'tokens': rng.normal(size=(6, 10, 4, 8)).astype(np.float32),
              'action_sums': np.cumsum(rng.normal(size=(6, 10, 2)), 1)}
    config = ml_collections.ConfigDict({'readout': {'gaps': (1, 2), 'ridge': 1e-3}})
    remote = tmp_path / 'remote'  # the bucket's stand-in, apart from what a local write of 'gs://...' would make

    def at(fn, path, *args, **kwargs):
        return fn(str(path).replace('gs://', f'{remote}/'), *args, **kwargs)
    with testing.mock_epath(open=at, exists=at, makedirs=at, mkdir=at, isdir=at, stat=at):
        w = trainer.fit_readout(config, 'gs://bucket/ac', arrays, log=lambda *a: None)
        refit = dict(arrays, tokens=arrays['tokens'] * 2)  # a refit would give another map
        again = trainer.fit_readout(config, 'gs://bucket/ac', refit, log=lambda *a: None)
    np.testing.assert_array_equal(again, w)
    np.testing.assert_array_equal(np.load(remote / 'bucket' / 'ac' / 'readout.npy'), w)
    assert not (tmp_path / 'gs:').exists()
