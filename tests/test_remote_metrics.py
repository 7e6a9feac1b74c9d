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
