"""Bad input to pretraining ends in one line naming the field and the fix, with nothing written."""
import os
import subprocess
import sys

import pytest

from vjepa_jax import train
from vjepa_jax.config import UsageError, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BAD = [('model.dtype', 'float64', r'--config.model.dtype=.float64. is not one of \['),
       ('model.variant', 'gigantic', r'--config.model.variant=.gigantic. is not one of \['),
       ('model.pos_embed', 'learned', r"is not one of \['rope', 'sincos'\]"),
       ('model.attention_impl', 'fast', 'is not one of'),
       ('train.log_every', 0, r'--config.train.log_every=0: must be a number >= 1'),
       ('train.num_steps', -5, r'--config.train.num_steps=-5: must be a number >= 0'),
       ('data.global_batch_size', 0, 'must be a number >= 1'),
       ('checkpoint.every_steps', -1, 'must be a number >= 1'),
       ('model.img_size', 70, 'img_size=70 is not a multiple of model.patch_size=8')]


@pytest.mark.parametrize('key,value,message', BAD, ids=[b[0] for b in BAD])
def test_bad_config_values_stop_before_the_workdir_exists(tmp_path, key, value, message):
    config = load_config(os.path.join(ROOT, 'configs', 'pretrain', 'tiny.py'), {key: value})
    with pytest.raises(UsageError, match=message) as e:
        train.train(config, str(tmp_path / 'run'))
    assert '\n' not in str(e.value)
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
