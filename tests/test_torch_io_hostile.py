"""The PyTorch reader against hostile and malformed files: memory bombs fail fast and small,
BUILD cannot set attributes on what it may not, malformed files are one ValueError line."""
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from vjepa_jax import torch_io


def tensor_pickle(size, stride, numel, key='0', build_on_function=False) -> bytes:
    """A protocol-2 pickle of {'t': a tensor} with the given extents (the writer's own opcodes)."""
    w = torch_io._Writer()
    out = w.out.write
    out(b'\x80\x02}(')
    w.save('t')
    w.glob('torch._utils', '_rebuild_tensor_v2')
    if build_on_function:  # BUILD with a state on the allowed function itself
        w.save({'__code__': 1})
        out(b'b')
    out(b'((')
    for v in ('storage',):
        w.save(v)
    w.glob('torch', 'FloatStorage')
    w.save(key)
    w.save('cpu')
    w.save(numel)
    out(b'tQ')
    w.save(0)
    w.save(tuple(size))
    w.save(tuple(stride))
    w.save(False)
    w.glob('collections', 'OrderedDict')
    out(b')RtRu.')
    return w.out.getvalue()


def write_zip(path, members, deflated=()):
    with zipfile.ZipFile(path, 'w', allowZip64=True) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(f'archive/{name}'), data,
                       compress_type=zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED)


def deflated_zeros_zip(path, gib: int):
    """archive/data/0: `gib` GiB of zeros, deflated (a ~2 MB file; streamed in 16 MiB pieces, never
    held whole), and a pickle pointing at it."""
    numel = (gib << 30) // 4
    with zipfile.ZipFile(path, 'w', allowZip64=True) as z:
        z.writestr(zipfile.ZipInfo('archive/data.pkl'), tensor_pickle((numel,), (1,), numel))
        info = zipfile.ZipInfo('archive/data/0')
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, 'w', force_zip64=True) as f:
            chunk = bytes(16 << 20)
            for _ in range((gib << 30) // len(chunk)):
                f.write(chunk)


LOAD_AND_MEASURE = '''
import resource, sys
from vjepa_jax import torch_io
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    torch_io.load_pth(sys.argv[1])
    print('loaded')
except Exception as e:
    print(type(e).__name__ + ': ' + str(e))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
'''


@pytest.fixture(scope='module')
def bombs(tmp_path_factory):
    root = tmp_path_factory.mktemp('bombs')
    write_zip(root / 'stride0.pth', {'data.pkl': tensor_pickle((1 << 30,), (0,), 1), 'data/0': bytes(4)})
    write_zip(root / 'shape.pth', {'data.pkl': tensor_pickle((1 << 20, 1 << 20), (1 << 20, 1), 4),
                                   'data/0': bytes(16)})
    deflated_zeros_zip(root / 'zip.pth', 2)
    return root


@pytest.mark.parametrize('name,message', [('stride0', 'refusing to expand it'), ('shape', 'refusing to expand it'),
                                          ('zip', 'is compressed')])
def test_memory_bombs_fail_fast_and_small(bombs, name, message):
    path = bombs / f'{name}.pth'
    assert os.path.getsize(path) < 3 << 20  # small files
    run = subprocess.run([sys.executable, '-c', LOAD_AND_MEASURE, str(path)], capture_output=True, text=True,
                         timeout=120)
    first, grown_mb = run.stdout.splitlines()[0], int(run.stdout.splitlines()[1])
    assert first.startswith('UnsafeCheckpointError: ') and message in first, run.stdout + run.stderr
    assert grown_mb < 100, grown_mb


def test_build_only_sets_attributes_on_dicts(tmp_path):
    path = tmp_path / 'build.pth'
    write_zip(path, {'data.pkl': tensor_pickle((2,), (1,), 2, build_on_function=True), 'data/0': bytes(8)})
    with pytest.raises(torch_io.UnsafeCheckpointError, match='refusing to set attributes on a function'):
        torch_io.load_pth(str(path))
    assert not hasattr(torch_io._rebuild_tensor, '__code__x')
    ok = tmp_path / 'ok.pth'
    write_zip(ok, {'data.pkl': tensor_pickle((2,), (1,), 2), 'data/0': np.arange(2, dtype=np.float32).tobytes()})
    np.testing.assert_array_equal(torch_io.load_pth(str(ok))['t'], [0, 1])


@pytest.mark.parametrize('members,message', [
    ({'data.pkl': tensor_pickle((2,), (1,), 2)[:-2], 'data/0': bytes(8)}, 'not a readable torch checkpoint'),
    ({'data.pkl': tensor_pickle((2,), (1,), 2)}, 'member archive/data/0 is missing'),
    ({'data.pkl': tensor_pickle((2,), (1,), 2), 'data/0': bytes(4)}, 'declares 2 elements'),
    ({'data.pkl': pickle.dumps([1, 2], protocol=2)[:5]}, 'not a readable torch checkpoint'),
    ({'data.pkl': tensor_pickle((2,), (1,), 2, key=('x',)), 'data/0': bytes(8)}, 'is missing'),
])
def test_malformed_files_are_one_line(tmp_path, members, message):
    path = tmp_path / 'bad.pth'
    write_zip(path, members)
    with pytest.raises((ValueError, torch_io.UnsafeCheckpointError), match=message) as e:
        torch_io.load_pth(str(path))
    assert '\n' not in str(e.value)
