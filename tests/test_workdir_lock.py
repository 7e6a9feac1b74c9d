"""One run per workdir: a live holder stops a second run (in-process and the real command line)
in one line; a holder killed with SIGKILL leaves a lock that the next run takes over."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from vjepa_jax.workdir_lock import WorkdirBusy, hold

HOLDER = ('import sys, time\nfrom vjepa_jax.workdir_lock import hold\n'
          'with hold(sys.argv[1]):\n    print("held", flush=True)\n    time.sleep(300)\n')


def test_second_run_stops_then_a_dead_holders_lock_is_taken_over(tmp_path):
    workdir = str(tmp_path / 'run')
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, workdir], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(WorkdirBusy, match=rf'in use by another run \(host {socket.gethostname()}, pid '
                                              rf'{holder.pid}, since '):
            with hold(workdir):
                pass
        cli = subprocess.run([sys.executable, '-m', 'vjepa_jax.main', '--config=configs/pretrain/tiny.py',
                              f'--workdir={workdir}'], capture_output=True, text=True, timeout=300,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert cli.returncode == 1
        last = cli.stderr.strip().splitlines()[-1]
        assert last.startswith(f'error: workdir {workdir} is in use by another run (host ') and f'pid {holder.pid}' in last
        assert not os.path.exists(os.path.join(workdir, 'checkpoints'))  # nothing written by the second run
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    said = []
    with hold(workdir, said.append):  # the OS freed the dead holder's lock
        assert len(said) == 1 and 'taking over the lock of a run that is gone' in said[0]
        assert f'pid {holder.pid}' in said[0]
    said.clear()
    with hold(workdir, said.append):  # released cleanly last time: nothing to say
        pass
    assert said == []
