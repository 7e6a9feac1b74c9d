"""Read and write PyTorch .pth / .pth.tar files without PyTorch (NumPy only).

A torch checkpoint (torch >= 1.6) is an uncompressed zip: `<name>/data.pkl` (a pickle
whose tensors point at storages by persistent id), `<name>/data/<key>` (raw little-endian
storage bytes) and `<name>/version`. The reader is a restricted unpickler: it admits the
tensor and storage rebuild functions and plain containers, and refuses every other global
with UnsafeCheckpointError, so opening a file can never run code from it. Nor can a file make
it allocate more than the file holds: members must be stored (torch never compresses them) and
match their storage's declared size, a tensor may have more elements than its storage (a
stride-0 view) only up to MAX_EXPANDED_BYTES, and BUILD may only set attributes on dicts (torch's
`_metadata`).
Any other malformed file is one ValueError line.

  tree = load_pth('vitl16.pth.tar')   # nested dicts / lists of numpy arrays and Python values
  save_pth(tree, 'out.pth.tar')       # torch.load(..., weights_only=True) reads it
"""
from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

# torch storage class name <-> numpy dtype
STORAGE_DTYPES = {
    'FloatStorage': np.dtype(np.float32), 'DoubleStorage': np.dtype(np.float64), 'HalfStorage': np.dtype(np.float16),
    'BFloat16Storage': np.dtype(ml_dtypes.bfloat16), 'LongStorage': np.dtype(np.int64),
    'IntStorage': np.dtype(np.int32), 'ShortStorage': np.dtype(np.int16), 'CharStorage': np.dtype(np.int8),
    'ByteStorage': np.dtype(np.uint8), 'BoolStorage': np.dtype(np.bool_),
}
DTYPE_STORAGES = {v: k for k, v in STORAGE_DTYPES.items()}
MAX_EXPANDED_BYTES = 64 << 20  # a tensor may outgrow its storage (a broadcast view) only up to this


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The file's pickle names something other than tensors and plain containers."""


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------
class _StorageType:
    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """storage: a 1-D numpy array; offset and stride in elements -> a C-contiguous copy."""
    size, stride = tuple(size), tuple(stride)
    if not all(isinstance(n, int) and n >= 0 for n in (offset, *size, *stride)):
        raise UnsafeCheckpointError(f'tensor of size {size}, stride {stride}, offset {offset}: not counts')
    numel = math.prod(size)
    if numel > len(storage) and numel * storage.itemsize > MAX_EXPANDED_BYTES:  # a stride-0 bomb or a lie
        raise UnsafeCheckpointError(f'tensor of size {size} ({numel} elements) on a storage of {len(storage)}: '
                                    f'refusing to expand it beyond {MAX_EXPANDED_BYTES >> 20} MiB')
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if offset < 0 or any(s < 0 for s in stride) or len(size) != len(stride) or last >= len(storage):
        raise UnsafeCheckpointError(f'tensor of size {size}, stride {stride}, offset {offset} reaches outside its '
                                    f'storage of {len(storage)} elements')
    if not size:
        return np.array(storage[offset])
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=[s * item for s in stride])
    return np.ascontiguousarray(view)


def _rebuild_parameter(tensor, requires_grad=False, hooks=None):
    return tensor


class _RestrictedUnpickler(pickle._Unpickler):  # the Python unpickler: its BUILD can be checked
    ALLOWED = {('collections', 'OrderedDict'): collections.OrderedDict,
               ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
               ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
               ('torch', 'Size'): tuple}

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.path = archive, prefix, path
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == 'torch' and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(f'{self.path}: refusing to load the global {module}.{name}: only tensors and '
                                    f'plain containers are allowed in a checkpoint')

    def load_build(self):
        """BUILD sets state on the object below it: only on dicts (torch's state_dict `_metadata`)."""
        if not isinstance(self.stack[-2], dict):
            raise UnsafeCheckpointError(f'{self.path}: refusing to set attributes on a {type(self.stack[-2]).__name__}')
        super().load_build()

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: load_build}

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != 'storage' or not isinstance(storage_type, _StorageType) or not isinstance(numel, int):
            raise UnsafeCheckpointError(f'{self.path}: unexpected persistent id {pid!r}')
        if key not in self.storages:
            info = _stored_member(self.archive, f'{self.prefix}data/{key}', self.path)
            if info.file_size != numel * storage_type.dtype.itemsize:
                raise UnsafeCheckpointError(f'{self.path}: storage {key} declares {numel} elements '
                                            f'({numel * storage_type.dtype.itemsize} bytes), its member holds '
                                            f'{info.file_size}')
            raw = self.archive.read(info)
            self.storages[key] = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder('<'), count=numel)
        return self.storages[key]


def _stored_member(archive: zipfile.ZipFile, name: str, path: str) -> zipfile.ZipInfo:
    """The member's ZipInfo, refused unless stored uncompressed (its size is then real bytes)."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(f'{path}: member {name} is missing: a damaged torch checkpoint') from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise UnsafeCheckpointError(f'{path}: member {name} is compressed ({info.file_size} bytes declared): torch '
                                    f'stores members uncompressed; refusing to inflate it')
    return info


def load_pth(path: str):
    """A torch zip checkpoint -> its object with numpy arrays in place of tensors."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f'{path} is not a zip-format torch checkpoint (written by torch < 1.6?): '
                         f're-save it with torch.save(torch.load(path), path)')
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.endswith('/data.pkl') or n == 'data.pkl']
            if not pickles:
                raise ValueError(f'{path}: no data.pkl inside: not a torch checkpoint')
            prefix = pickles[0][:-len('data.pkl')]  # 'archive/' (or '' for a file at the zip root)
            if f'{prefix}byteorder' in names and archive.read(_stored_member(archive, f'{prefix}byteorder', path)) \
                    != b'little':
                raise ValueError(f'{path}: big-endian checkpoints are not supported')
            data = archive.read(_stored_member(archive, pickles[0], path))
            return _RestrictedUnpickler(data, archive, prefix, path).load()
    except (UnsafeCheckpointError, ValueError):
        raise
    except Exception as e:  # noqa: BLE001 - a malformed pickle or zip: one line, never a traceback
        first = (str(e).strip().splitlines() or [''])[0][:160]
        raise ValueError(f'{path}: not a readable torch checkpoint ({type(e).__name__}: {first})') from None


# ----------------------------------------------------------------------------------------
# Writing: a protocol-2 pickle emitted opcode by opcode (only what torch's loader needs)
# ----------------------------------------------------------------------------------------
class _Writer:
    def __init__(self):
        self.out = io.BytesIO()
        self.storages = []

    def glob(self, module: str, name: str):
        self.out.write(b'c' + module.encode() + b'\n' + name.encode() + b'\n')

    def save(self, obj):
        w = self.out.write
        if isinstance(obj, (np.ndarray, np.generic)) or hasattr(obj, '__array__') and not isinstance(obj, (str, bytes)):
            self.tensor(np.asarray(obj))
        elif isinstance(obj, dict):
            if isinstance(obj, collections.OrderedDict):
                self.glob('collections', 'OrderedDict')
                w(b')R')
            else:
                w(b'}')
            if obj:
                w(b'(')
                for key, value in obj.items():
                    self.save(key)
                    self.save(value)
                w(b'u')
        elif isinstance(obj, list):
            w(b']')
            if obj:
                w(b'(')
                for value in obj:
                    self.save(value)
                w(b'e')
        elif isinstance(obj, tuple):
            w(b'(')
            for value in obj:
                self.save(value)
            w(b't')
        elif obj is None:
            w(b'N')
        elif obj is True or obj is False:
            w(b'\x88' if obj else b'\x89')
        elif isinstance(obj, int):
            if not -2 ** 63 <= obj < 2 ** 63:
                raise OverflowError(f'integer {obj} does not fit the 64 bits a torch checkpoint holds')
            w(b'J' + struct.pack('<i', obj) if -2 ** 31 <= obj < 2 ** 31 else
              b'\x8a\x08' + obj.to_bytes(8, 'little', signed=True))
        elif isinstance(obj, float):
            w(b'G' + struct.pack('>d', obj))
        elif isinstance(obj, str):
            data = obj.encode('utf-8')
            w(b'X' + struct.pack('<I', len(data)) + data)
        else:
            raise TypeError(f'cannot write a {type(obj).__name__} into a torch checkpoint')

    def tensor(self, array: np.ndarray):
        if array.dtype not in DTYPE_STORAGES:
            raise TypeError(f'no torch storage for dtype {array.dtype}')
        array = np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        key = str(len(self.storages))
        self.storages.append(array)
        w = self.out.write
        self.glob('torch._utils', '_rebuild_tensor_v2')
        w(b'(')
        w(b'(')  # persistent id ('storage', torch.<T>Storage, key, 'cpu', numel)
        self.save('storage')
        self.glob('torch', DTYPE_STORAGES[array.dtype])
        self.save(key)
        self.save('cpu')
        self.save(int(array.size))
        w(b'tQ')
        self.save(0)
        self.save(tuple(int(n) for n in array.shape))
        self.save(tuple(s // array.itemsize for s in array.strides) if array.size else (1,) * array.ndim)
        self.save(False)
        self.glob('collections', 'OrderedDict')
        w(b')R')
        w(b'tR')

    def pickle(self, obj) -> bytes:
        self.out.write(b'\x80\x02')
        self.save(obj)
        self.out.write(b'.')
        return self.out.getvalue()


def save_pth(obj, path: str, archive_name: str = 'archive') -> None:
    """Write nested dicts / lists / tuples of numpy arrays and Python scalars as torch.save does
    (uncompressed zip, storages 64-byte aligned)."""
    writer = _Writer()
    records = [('data.pkl', writer.pickle(obj)), ('byteorder', b'little')]
    records += [(f'data/{i}', a.tobytes()) for i, a in enumerate(writer.storages)]
    records += [('version', b'3\n')]
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, data in records:
            info = zipfile.ZipInfo(f'{archive_name}/{name}', date_time=(1980, 1, 1, 0, 0, 0))
            header_end = archive.fp.tell() + 30 + len(info.filename.encode()) + 4
            pad = -header_end % 64  # torch maps storages at 64-byte aligned offsets
            info.extra = struct.pack('<HH', 0xFB4A, pad) + b'Z' * pad
            archive.writestr(info, data)
