"""TFDS builders for video datasets: ENCODED bytes plus metadata in ArrayRecord files.

No TensorFlow is needed to build or to read (`tfds.data_source`). Each record holds
  video (bytes), label (int64), id (str), path (str),
  num_frames (int64), fps, duration (float32 seconds), height, width (int32).
Every file is probed (decode.probe); empty, truncated, unreadable and missing files are
left out, counted and listed in `<data_dir>/<name>/build_log.txt`; a build never dies on
one bad file.

  video_csv  any list in the original's format: 'path label' per line, no header
             (relative paths are taken from the list's folder)
  kinetics   configs k400 / k600 / k700; manual_dir holds annotations/{train,validate,test}.csv
             (label,youtube_id,time_start,time_end,split) and the clips, named
             {youtube_id}_{start:06d}_{end:06d}.mp4 anywhere below manual_dir
  ssv2       manual_dir holds the {id}.webm files (any sub-folder) and
             something-something-v2-{labels,train,validation}.json
"""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import tensorflow_datasets as tfds

from vjepa_jax.data import decode

FEATURES = dict(
    video=tfds.features.Tensor(shape=(), dtype=np.object_),
    label=tfds.features.Scalar(dtype=np.int64),
    id=tfds.features.Text(),
    path=tfds.features.Text(),
    num_frames=tfds.features.Scalar(dtype=np.int64),
    fps=tfds.features.Scalar(dtype=np.float32),
    duration=tfds.features.Scalar(dtype=np.float32),
    height=tfds.features.Scalar(dtype=np.int32),
    width=tfds.features.Scalar(dtype=np.int32),
)


class VideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared part: subclasses list (id, path, label) per split in `_items`."""
    VERSION = tfds.core.Version('1.0.0')

    def __init__(self, *, file_format='array_record', **kwargs):
        self.skipped: list = []  # (split, path, reason)
        self.written: dict = {}
        super().__init__(file_format=file_format, **kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(FEATURES),
                                     description=self.__doc__)

    def _items(self, manual_dir) -> dict:
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        manual = None
        if self.MANUAL_DOWNLOAD_INSTRUCTIONS:
            try:
                manual = dl_manager.manual_dir
            except AssertionError as e:
                raise FileNotFoundError(f'{self.name}: manual directory missing ({e}): pass --manual_dir=DIR') from None
        return {split: self._generate_examples(split, items) for split, items in self._items(manual).items()}

    def _generate_examples(self, split, items):
        """items: (key, path, label) or (key, path, label, {extra feature: value})."""
        self.written[split] = 0
        for key, path, label, *extra in items:
            if not os.path.exists(path):
                self.skipped.append((split, path, 'missing file'))
                continue
            with open(path, 'rb') as f:
                data = f.read()
            try:
                info = decode.probe(data, path)
            except decode.DecodeError as e:
                self.skipped.append((split, path, str(e).removeprefix(f'{path}: ')))
                continue
            self.written[split] += 1
            yield key, dict(video=data, label=int(label), id=str(key), path=path, num_frames=info.num_frames,
                            fps=info.fps, duration=info.duration, height=info.height, width=info.width,
                            **(extra[0] if extra else {}))

    def write_build_log(self) -> str:
        """One line per skipped file ('split<TAB>path<TAB>reason') next to the dataset."""
        path = os.path.join(self.data_dir, 'build_log.txt')
        with open(path, 'w') as f:
            for split, n in self.written.items():
                f.write(f'# {split}: {n} records written\n')
            for row in self.skipped:
                f.write('\t'.join(row) + '\n')
        return path


class VideoCsv(VideoBuilder):
    """Videos listed as 'path label' lines (the original's CSV format)."""

    def __init__(self, *, csv: str | None = None, val_csv: str | None = None, **kwargs):
        self.lists = {'train': csv, 'validation': val_csv}
        super().__init__(**kwargs)

    def _items(self, manual_dir):
        out = {}
        for split, list_path in self.lists.items():
            if not list_path:
                continue
            if not os.path.exists(list_path):
                raise FileNotFoundError(f'video list {list_path} not found: pass --csv=PATH to a "path label" file')
            base = os.path.dirname(os.path.abspath(list_path))
            rows = []
            for n, line in enumerate(open(list_path)):
                parts = line.strip().rsplit(' ', 1)
                if not line.strip():
                    continue
                if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                    raise ValueError(f'{list_path}:{n + 1}: expected "path label", got {line.strip()!r}')
                path = parts[0] if os.path.isabs(parts[0]) else os.path.join(base, parts[0])
                rows.append((f'{split}-{n:08d}', path, int(parts[1])))
            out[split] = rows
        if not out:
            raise ValueError('video_csv needs --csv=PATH (and optionally --val_csv=PATH)')
        return out


def _index_files(root: str, suffixes: tuple) -> dict:
    """{file name: path} for every file below root with one of the suffixes."""
    index = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(suffixes):
                index.setdefault(name, os.path.join(folder, name))
    return index


class Kinetics(VideoBuilder):
    """Kinetics-400/600/700 from the official release in a manual directory."""
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f'k{n}', description=f'Kinetics-{n}') for n in (400, 600, 700)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def _items(self, manual_dir):
        if not manual_dir or not os.path.isdir(os.path.join(manual_dir, 'annotations')):
            raise FileNotFoundError(f'kinetics: {manual_dir}/annotations/ not found: pass --manual_dir=DIR holding '
                                    'annotations/{train,validate,test}.csv and the clips')
        files = _index_files(str(manual_dir), ('.mp4', '.webm', '.mkv'))
        splits = {'train': 'train', 'validation': 'validate', 'test': 'test'}
        tables = {s: list(csv.DictReader(open(p))) for s, f in splits.items()
                  if os.path.exists(p := os.path.join(manual_dir, 'annotations', f + '.csv'))}
        classes = sorted({row['label'] for row in tables.get('train', []) if row.get('label')})
        label_of = {c: i for i, c in enumerate(classes)}
        out = {}
        for split, rows in tables.items():
            items = []
            for row in rows:
                stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
                path = next((files[stem + ext] for ext in ('.mp4', '.webm', '.mkv') if stem + ext in files),
                            os.path.join(manual_dir, split, stem + '.mp4'))
                items.append((stem, path, label_of.get(row.get('label', ''), -1)))
            out[split] = items
        return out


class Ssv2(VideoBuilder):
    """Something-Something v2 from its webm files and label JSON files (manual directory)."""
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def _items(self, manual_dir):
        labels_path = os.path.join(manual_dir or '', 'something-something-v2-labels.json')
        if not os.path.exists(labels_path):
            raise FileNotFoundError(f'ssv2: {labels_path} not found: pass --manual_dir=DIR holding the webm files '
                                    'and something-something-v2-{labels,train,validation}.json')
        labels = {k: int(v) for k, v in json.load(open(labels_path)).items()}
        files = _index_files(str(manual_dir), ('.webm',))
        out = {}
        for split, name in (('train', 'train'), ('validation', 'validation')):
            path = os.path.join(manual_dir, f'something-something-v2-{name}.json')
            if not os.path.exists(path):
                continue
            items = []
            for row in json.load(open(path)):
                template = row['template'].replace('[', '').replace(']', '')
                items.append((str(row['id']), files.get(f"{row['id']}.webm", os.path.join(manual_dir, f"{row['id']}.webm")),
                              labels[template]))
            out[split] = items
        return out


IMAGE_FEATURES = dict(image=FEATURES['video'], label=FEATURES['label'], id=FEATURES['id'], path=FEATURES['path'],
                      height=FEATURES['height'], width=FEATURES['width'])
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


class ImageFolder(VideoBuilder):
    """Images in class folders: manual_dir/{train,val}/<class>/<image> (ImageNet-1k, Places205 and
    iNat21 in their usual prepared layout, or any folder). Classes are the sorted train folders;
    records hold the encoded image bytes (decoded at read time, no TensorFlow)."""
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=d) for n, d in (
        ('imagenet1k', 'ImageNet-1k (ILSVRC-2012), 1000 classes'), ('places205', 'Places205, 205 classes'),
        ('inat21', 'iNaturalist 2021, 10000 classes'), ('custom', 'any image folder'))]
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(IMAGE_FEATURES),
                                     description=self.__doc__)

    def _items(self, manual_dir):
        train = os.path.join(manual_dir or '', 'train')
        if not os.path.isdir(train):
            raise FileNotFoundError(f'image_folder: {train} not found: pass --manual_dir=DIR holding '
                                    'train/<class>/<image> (and val/<class>/<image>)')
        classes = sorted(d for d in os.listdir(train) if os.path.isdir(os.path.join(train, d)))
        out = {}
        for split, folder in (('train', 'train'), ('validation', 'val')):
            root = os.path.join(manual_dir, folder)
            if not os.path.isdir(root):
                continue
            items = []
            for label, name in enumerate(classes):
                for file in sorted(os.listdir(os.path.join(root, name)) if os.path.isdir(os.path.join(root, name))
                                   else []):
                    if file.lower().endswith(IMAGE_SUFFIXES):
                        items.append((f'{name}/{file}', os.path.join(root, name, file), label))
            out[split] = items
        return out

    def _generate_examples(self, split, items):
        """items: (key, path, label) or (key, path, label, {extra feature: value})."""
        self.written[split] = 0
        for key, path, label, *extra in items:
            data = open(path, 'rb').read()
            try:
                height, width = decode.decode_image(data, path).shape[:2]
            except decode.DecodeError as e:
                self.skipped.append((split, path, str(e).removeprefix(f'{path}: ')))
                continue
            self.written[split] += 1
            yield key, dict(image=data, label=label, id=key, path=path, height=height, width=width)


BUILDERS = {'video_csv': VideoCsv, 'kinetics': Kinetics, 'ssv2': Ssv2, 'image_folder': ImageFolder}
