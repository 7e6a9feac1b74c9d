"""Video data: real mp4/webm files made here, TFDS builds, decoding, clip rules, transforms,
the grain pipeline (determinism, resume, mixtures, corrupt records, workers), training on it."""
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vjepa_jax import masks
from vjepa_jax.data import build, builders, clips, decode, pipeline, transforms


def coded_frames(n, h=48, w=64):
    """Frame i shows i in two flat halves: left (i // 16) * 16 + 8, right (i % 16) * 16 + 8."""
    f = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        f[i, :, :w // 2] = (i // 16) * 16 + 8
        f[i, :, w // 2:] = (i % 16) * 16 + 8
    return f


def frame_ids(frames):
    w = frames.shape[2]
    hi = np.round((frames[:, 8:-8, 4:w // 2 - 4].mean((1, 2, 3)) - 8) / 16)
    lo = np.round((frames[:, 8:-8, w // 2 + 4:-4].mean((1, 2, 3)) - 8) / 16)
    return (hi * 16 + lo).astype(int)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """A folder of real videos plus bad files, and the 'path label' list of the original's format."""
    root = tmp_path_factory.mktemp('videos')
    lines = []
    for i, (n, ext) in enumerate([(150, 'mp4'), (90, 'webm'), (40, 'mp4'), (200, 'webm')]):
        path = root / f'good{i}.{ext}'
        decode.encode_video(coded_frames(n), str(path), fps=30)
        lines.append(f'{path} {i % 2}')
    (root / 'empty.mp4').write_bytes(b'')
    (root / 'trunc.mp4').write_bytes((root / 'good0.mp4').read_bytes()[:3000])
    (root / 'text.mp4').write_text('this is not a video\n' * 100)
    lines += [f'{root}/empty.mp4 0', f'{root}/trunc.mp4 1', f'{root}/text.mp4 0', f'{root}/missing.mp4 1']
    (root / 'list.csv').write_text('\n'.join(lines) + '\n')
    return root


@pytest.fixture(scope='module')
def built(videos, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp('tfds'))
    b = build.build('video_csv', data_dir, csv=str(videos / 'list.csv'))
    b.write_build_log()
    return data_dir, b


def test_build_skips_counts_and_names_bad_files(built, videos):
    data_dir, b = built
    assert b.written == {'train': 4}
    reasons = {os.path.basename(p): r for _, p, r in b.skipped}
    assert set(reasons) == {'empty.mp4', 'trunc.mp4', 'text.mp4', 'missing.mp4'}
    assert reasons['missing.mp4'] == 'missing file' and 'under 1024' in reasons['empty.mp4']
    log = open(os.path.join(b.data_dir, 'build_log.txt')).read()
    assert '# train: 4 records written' in log and 'text.mp4' in log
    src = tfds.data_source('video_csv', data_dir=data_dir, split='train')
    rows = sorted((src[i]['num_frames'], float(src[i]['fps']), src[i]['height'], src[i]['width']) for i in range(4))
    assert rows == [(40, 30.0, 48, 64), (90, 30.0, 48, 64), (150, 30.0, 48, 64), (200, 30.0, 48, 64)]


@pytest.mark.slow
def test_build_cli_summary(videos, tmp_path):
    from helpers import run_tool
    r = run_tool('vjepa_jax.data.build', '--builder=video_csv', f'--csv={videos}/list.csv', f'--data_dir={tmp_path}')
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'train: 4 records written' in r.stdout and '4 files skipped' in r.stdout
    assert 'missing.mp4: missing file' in r.stdout
    r = run_tool('vjepa_jax.data.build', '--builder=video_csv', '--csv=/nonexistent.csv',
                 f'--data_dir={tmp_path}/other')
    assert r.returncode != 0 and 'not found' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_tool('vjepa_jax.data.build', '--builder=kinetics/k999', f'--data_dir={tmp_path}/k')
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_decoded_frames_follow_the_original_clip_rule(built):
    data_dir, _ = built
    src = tfds.data_source('video_csv', data_dir=data_dir, split='train')
    for i in range(4):
        rec = src[i]
        rng = np.random.default_rng(i)
        idx = clips.clip_indices(int(rec['num_frames']), 16, 4, 1, rng)[0]
        got = frame_ids(decode.decode_frames(rec['video'], idx))
        np.testing.assert_array_equal(got, np.minimum(idx, rec['num_frames'] - 1))
        n = int(rec['num_frames'])
        late = frame_ids(decode.decode_frames(rec['video'], [n - 10, n + 5, 3, n - 1]))
        np.testing.assert_array_equal(late, [n - 10, n - 1, 3, n - 1])  # past the end: the last frame


@pytest.mark.parametrize('ext, threads', [('mp4', 1), ('mp4', 2), ('webm', 1)])
def test_decoding_skips_unwanted_non_reference_frames_and_gives_the_same_frames(tmp_path, ext, threads):
    import io

    import av

    from vjepa_jax.data import synthetic
    path = str(tmp_path / f'clip.{ext}')
    decode.encode_video(synthetic.render_clip(np.random.default_rng(0), 120, 64), path, fps=30)
    data = open(path, 'rb').read()
    with av.open(io.BytesIO(data)) as container:  # every frame, decoded plainly
        everything = [(av.video.frame.PictureType(f.pict_type).name, f.to_ndarray(format='rgb24'))
                      for f in container.decode(video=0)]
    full = np.stack([f for _, f in everything])
    for idx in ([3, 7, 11, 15, 19], [40, 44, 48, 52, 56, 60], [0, 1, 2, 119], [97, 5, 5, 33]):
        np.testing.assert_array_equal(decode.decode_frames(data, idx, threads=threads), full[idx])
    if ext == 'mp4':  # H.264 with B-frames: the unwanted non-reference ones are not decoded
        assert sum(t == 'B' for t, _ in everything) > 20
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            index = lambda pts: round((pts - (stream.start_time or 0)) * stream.time_base * 30)  # noqa: E731
            out = [(index(f.pts), f.to_ndarray(format='rgb24'))
                   for f in decode._decode_wanted(container, stream, lambda pts: index(pts) % 4 == 0)]
        assert len(full) // 2 < len(out) < len(full)
        kept = [i for i, _ in out]
        np.testing.assert_array_equal(np.stack([f for _, f in out]), full[kept])
        assert set(range(0, len(full), 4)) <= set(kept)


def test_clip_index_rules_by_hand():
    class Fixed:  # the original draws end = randint(span, partition)
        def integers(self, lo, hi):
            assert (lo, hi) == (64, 300)
            return 100
    idx = clips.clip_indices(300, 16, 4, 1, Fixed())[0]
    np.testing.assert_array_equal(idx, np.clip(np.linspace(36, 100, 16), 36, 99).astype(int))
    short = clips.clip_indices(40, 16, 4, 1, np.random.default_rng(0))[0]  # 10 frames at step ~4.4, then padded
    np.testing.assert_array_equal(short, np.r_[np.linspace(0, 40, 10).astype(int)[:-1], 39, [39] * 6])
    three = clips.clip_indices(600, 16, 4, 3, random=False)  # segments: first window of each third
    np.testing.assert_array_equal(three[:, 0], [0, 200, 400])
    assert clips.frame_step(29.97, 16, target_fps=4) == 7 and clips.frame_step(25, 16, duration=2.56) == 4


def test_crop_statistics_and_fallback():
    rng = np.random.default_rng(0)
    boxes = np.array([transforms.crop_box(rng, 256, 340) for _ in range(4000)])
    area = boxes[:, 2] * boxes[:, 3] / (256 * 340)
    aspect = boxes[:, 3] / boxes[:, 2]
    # uniform area in (0.3, 1) (median 0.65), less the large crops that do not fit and are redrawn
    assert area.min() > 0.29 and area.max() <= 1.0 and 0.45 < np.median(area) < 0.65
    assert aspect.min() > 0.7 and aspect.max() < 1.42
    # where every draw fits (square frame, scale <= 0.5): area uniform, aspect log-uniform
    fit = np.array([transforms.crop_box(rng, 256, 256, scale=(0.3, 0.5)) for _ in range(4000)])
    assert abs(np.mean(fit[:, 2] * fit[:, 3] / 256 ** 2) - 0.4) < 0.01
    log_aspect = np.log(fit[:, 3] / fit[:, 2])
    assert abs(np.mean(log_aspect) - np.mean(np.log([0.75, 1.35]))) < 0.01
    assert abs(np.std(log_aspect) - np.log(1.35 / 0.75) / np.sqrt(12)) < 0.01
    assert (boxes[:, 0] + boxes[:, 2] <= 256).all() and (boxes[:, 1] + boxes[:, 3] <= 340).all()
    assert transforms.crop_box(rng, 10, 400, scale=(0.9, 1.0)) == (0, (400 - 14) // 2, 10, 14)  # centre fallback


def test_transforms_resize_flip_normalise_and_eval_views():
    clip = np.tile(np.arange(8, dtype=np.uint8)[None, None, :, None] * 30, (2, 4, 1, 3))  # (2, 4, 8, 3) ramp
    up = transforms.resize(clip, 4, 16)
    np.testing.assert_allclose(up[0, 0, :4, 0], [0, 7.5, 22.5, 37.5])  # torch bilinear, align_corners=False
    frames = np.random.default_rng(0).integers(0, 255, (2, 50, 70, 3)).astype(np.uint8)
    for h, w in ((32, 32), (120, 90)):  # down and up: the fast path equals the NumPy reference
        np.testing.assert_allclose(transforms.resize(frames, h, w), transforms.resize_reference(frames, h, w),
                                   atol=1e-3)
    out = transforms.train_transform(np.full((3, 32, 32, 3), 124, np.uint8), np.random.default_rng(0), size=16)
    assert out.shape == (3, 16, 16, 3) and abs(float(out[..., 0].mean()) - (124 - 123.675) / 58.395) < 1e-4
    views = transforms.eval_views(np.random.default_rng(0).integers(0, 255, (2, 32, 64, 3)).astype(np.uint8), 16)
    assert views.shape == (3, 2, 16, 16, 3)
    assert not np.allclose(views[0], views[2])


def make(sources, *, weights=None, seed=0, batch=4, workers=0, start=0, decoded_cache_mb=0, uint8=False):
    cfg = pipeline.ClipConfig(frames_per_clip=8, frame_step=2, crop_size=32, decoded_cache_mb=decoded_cache_mb,
                              uint8=uint8)
    sampler = masks.MultiBlockMaskSampler((4, 2, 2), [masks.BlockSpec(num_blocks=1, spatial_scale=(0.25, 0.25))])
    return pipeline.make_dataset(sources, weights, cfg, batch_size=batch, mask_sampler=sampler, seed=seed,
                                 num_workers=workers, start_step=start)


def test_pipeline_determinism_and_exact_resume(built):
    src = pipeline.TfdsSource('video_csv', built[0])
    it = iter(make([src]))
    first = [next(it) for _ in range(3)]
    again = iter(make([src]))
    assert all(np.array_equal(a['clips'], b['clips']) for a, b in zip(first, [next(again) for _ in range(3)]))
    other = next(iter(make([src], seed=1)))
    assert not np.array_equal(other['clips'], first[0]['clips'])
    state = it.get_state()
    want = [next(it) for _ in range(2)]
    resumed = iter(make([src]))
    resumed.set_state(json.loads(json.dumps(state)))  # the state survives a JSON round trip
    got = [next(resumed) for _ in range(2)]
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a['clips'], b['clips'])
        np.testing.assert_array_equal(a['masks'][0][0], b['masks'][0][0])
    by_step = next(iter(make([src], start=3)))  # starting at a step gives that step's batch
    np.testing.assert_array_equal(by_step['clips'], want[0]['clips'])
    assert first[0]['clips'].shape == (4, 8, 32, 32, 3) and first[0]['skipped'] == 0


def test_uint8_batches_are_the_float_batches_rounded_and_normalise_on_the_device(built):
    """data.uint8_clips: the same clips, crops and flips as uint8 0-255 (a quarter of the bytes);
    normalised on the device they are within one level of the float pipeline's."""
    import jax.numpy as jnp
    src = pipeline.TfdsSource('video_csv', built[0])
    floats, ints = iter(make([src])), iter(make([src], uint8=True))
    for _ in range(2):
        f, u = next(floats), next(ints)
        assert u['clips'].dtype == np.uint8 and u['clips'].shape == f['clips'].shape
        np.testing.assert_array_equal(u['masks'][0][0], f['masks'][0][0])
        on_device = np.asarray(transforms.normalize_on_device(jnp.asarray(u['clips'])))
        level = 1.0 / transforms.STD.min()  # one 0-255 level, normalised
        assert np.abs(on_device - f['clips']).max() <= 1.01 * level
        np.testing.assert_allclose(on_device, transforms.normalize(u['clips'].astype(np.float32)), atol=1e-5)
    assert transforms.normalize_on_device(f['clips']) is f['clips']  # float clips: already normalised


def test_decoded_video_cache_gives_the_same_batches(built):
    """data.decoded_cache_mb: each video decoded once and kept; the clips are the decoder's."""
    src = pipeline.TfdsSource('video_csv', built[0])
    plain, cached = iter(make([src])), iter(make([src], decoded_cache_mb=64))
    for _ in range(3):
        np.testing.assert_array_equal(next(plain)['clips'], next(cached)['clips'])
    videos = pipeline.DecodedVideos(1)  # 1 byte: the first video fills it, the rest decode as usual
    record = src[0]
    idx = np.array([0, 2, 4, 4, 1])
    want = decode.decode_frames(record['video'], idx)
    np.testing.assert_array_equal(videos.frames(record['video'], idx, int(record['num_frames']), 'v', 'a'), want)
    assert list(videos.videos) == ['a'] and videos.used == videos.videos['a'].nbytes
    np.testing.assert_array_equal(videos.frames(record['video'], idx, int(record['num_frames']), 'v', 'b'), want)
    assert list(videos.videos) == ['a']
    past = np.array([0, 10 ** 6])  # past the end: decoded as decode_frames pads (the stream's last frame)
    np.testing.assert_array_equal(videos.frames(record['video'], past, int(record['num_frames']), 'v', 'a'),
                                  decode.decode_frames(record['video'], past))


@pytest.mark.slow
def test_multiprocess_workers_give_the_same_batches(built):
    src = pipeline.TfdsSource('video_csv', built[0])
    single = iter(make([src]))
    multi = iter(make([src], workers=2))
    for _ in range(2):
        np.testing.assert_array_equal(next(single)['clips'], next(multi)['clips'])


class LabelSet(builders.VideoCsv):
    """Same videos, every label set to `label` (to tell mixture members apart)."""
    label_value = 0

    def _items(self, manual_dir):
        return {s: [(k, p, self.label_value) for k, p, _ in rows] for s, rows in super()._items(manual_dir).items()}


class MixA(LabelSet):
    label_value = 10


class MixB(LabelSet):
    label_value = 20


class UncheckedCsv(builders.VideoCsv):
    """Writes every listed file WITHOUT probing: a dataset with corrupt records for read-time tests."""

    def _generate_examples(self, split, items):
        for key, path, label in items:
            if os.path.exists(path):
                yield key, dict(video=open(path, 'rb').read(), label=label, id=key, path=path, num_frames=60,
                                fps=30.0, duration=2.0, height=48, width=64)


def test_mixture_proportions(videos, tmp_path):
    for cls in (MixA, MixB):
        cls(data_dir=str(tmp_path), csv=str(videos / 'list.csv')).download_and_prepare()
    srcs = [pipeline.TfdsSource('mix_a', str(tmp_path)), pipeline.TfdsSource('mix_b', str(tmp_path))]
    it = iter(make(srcs, weights=[0.75, 0.25]))
    labels = np.concatenate([next(it)['label'] for _ in range(10)])
    assert (labels == 10).sum() == 30 and (labels == 20).sum() == 10


def test_corrupt_records_at_read_time_are_skipped_and_counted(videos, tmp_path):
    UncheckedCsv(data_dir=str(tmp_path), csv=str(videos / 'list.csv')).download_and_prepare()
    src = pipeline.TfdsSource('unchecked_csv', str(tmp_path))
    assert len(src) == 7  # 4 good + empty + truncated + text
    it = iter(make([src]))
    batches = [next(it) for _ in range(6)]
    assert sum(int(b['skipped']) for b in batches) > 0
    assert all(np.isfinite(b['clips']).all() for b in batches)


class Images(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(dict(
            image=tfds.features.Tensor(shape=(40, 40, 3), dtype=np.uint8), label=tfds.features.Scalar(np.int64))))

    def _split_generators(self, dl_manager):
        return {'train': self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        for i in range(5):
            yield i, dict(image=rng.integers(0, 255, (40, 40, 3)).astype(np.uint8), label=i)


def test_images_are_repeated_into_clips(tmp_path):
    Images(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
    batch = next(iter(make([pipeline.TfdsSource('images', str(tmp_path))])))
    assert batch['clips'].shape == (4, 8, 32, 32, 3)
    np.testing.assert_array_equal(batch['clips'][:, 0], batch['clips'][:, 7])


@pytest.mark.slow
@pytest.mark.parametrize('uint8_clips', [False, True])
def test_training_on_a_built_dataset(built, tmp_path, uint8_clips):
    from helpers import config
    from vjepa_jax import train
    cfg = config('tiny', **{'data.datasets': 'video_csv', 'data.data_dir': built[0], 'train.num_steps': 3,
                            'train.log_every': 1, 'data.uint8_clips': uint8_clips})
    train.train(cfg, str(tmp_path), log=lambda *_: None)
    rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
    assert len(rows) == 3 and rows[-1]['skipped_records'] == 0 and np.isfinite(rows[-1]['loss'])


def test_kinetics_builder_from_the_official_layout(videos, tmp_path):
    manual = tmp_path / 'k400'
    (manual / 'annotations').mkdir(parents=True)
    (manual / 'train' / 'abseiling').mkdir(parents=True)
    rows = ['label,youtube_id,time_start,time_end,split']
    for i, (label, yid) in enumerate([('abseiling', 'aaa'), ('zumba', 'bbb'), ('abseiling', 'ccc')]):
        name = f'{yid}_{i * 10:06d}_{i * 10 + 10:06d}.mp4'
        target = manual / 'train' / ('abseiling' if label == 'abseiling' else '') / name
        target.write_bytes((videos / 'good0.mp4').read_bytes())
        rows.append(f'{label},{yid},{i * 10},{i * 10 + 10},train')
    rows.append('zumba,missing,0,10,train')
    (manual / 'annotations' / 'train.csv').write_text('\n'.join(rows) + '\n')
    b = build.build('kinetics/k400', str(tmp_path / 'data'), manual_dir=str(manual))
    assert b.written == {'train': 3} and [os.path.basename(p) for _, p, _ in b.skipped] == ['missing_000000_000010.mp4']
    src = tfds.data_source('kinetics/k400', data_dir=str(tmp_path / 'data'), split='train')
    assert sorted((src[i]['id'].decode(), int(src[i]['label'])) for i in range(3)) == [
        ('aaa_000000_000010', 0), ('bbb_000010_000020', 1), ('ccc_000020_000030', 0)]


def test_ssv2_builder_from_its_json_files(videos, tmp_path):
    manual = tmp_path / 'ssv2'
    (manual / 'videos').mkdir(parents=True)
    for vid in ('11', '12'):
        (manual / 'videos' / f'{vid}.webm').write_bytes((videos / 'good1.webm').read_bytes())
    (manual / 'something-something-v2-labels.json').write_text(json.dumps(
        {'Holding something': '0', 'Pushing something from left to right': '1'}))
    (manual / 'something-something-v2-train.json').write_text(json.dumps([
        {'id': '11', 'label': 'holding a pen', 'template': 'Holding [something]', 'placeholders': ['a pen']},
        {'id': '12', 'label': 'pushing a cup', 'template': 'Pushing [something] from left to right',
         'placeholders': ['a cup']}]))
    b = build.build('ssv2', str(tmp_path / 'data'), manual_dir=str(manual))
    assert b.written == {'train': 2} and not b.skipped
    src = tfds.data_source('ssv2', data_dir=str(tmp_path / 'data'), split='train')
    assert sorted((src[i]['id'].decode(), int(src[i]['label'])) for i in range(2)) == [('11', 0), ('12', 1)]
    with pytest.raises(FileNotFoundError, match='something-something-v2-labels.json'):
        build.build('ssv2', str(tmp_path / 'data2'), manual_dir=str(tmp_path))


def test_records_damaged_on_disk_after_the_build_are_skipped_and_counted(built, tmp_path):
    """Bytes flipped inside one record's ArrayRecord chunk (after the build): that record fails its
    stored hash and is replaced like an undecodable one, counted in `skipped`."""
    import glob
    import shutil
    data_dir = str(tmp_path / 'tfds')
    shutil.copytree(built[0], data_dir)
    shard = max(glob.glob(f'{data_dir}/video_csv/*/video_csv-train.array_record*'), key=os.path.getsize)
    original = open(shard, 'rb').read()

    def unreadable_records():
        src, bad = pipeline.TfdsSource('video_csv', data_dir), []
        for i in range(len(src)):
            try:
                src[i]
            except Exception as e:  # noqa: BLE001
                bad.append(str(e))
        return src, bad
    for offset in range(512, len(original) // 2, 512):  # the first zeroed span that hits one record's chunk
        with open(shard, 'wb') as f:
            f.write(original[:offset] + bytes(64) + original[offset + 64:])
        src, bad = unreadable_records()
        if 1 <= len(bad) < len(src):
            break
    assert 1 <= len(bad) < len(src) and 'hash mismatch' in bad[0], bad
    it = iter(make([src]))
    batches = [next(it) for _ in range(4)]
    assert sum(int(b['skipped']) for b in batches) > 0
    assert all(np.isfinite(b['clips']).all() for b in batches)


@pytest.mark.parametrize('damage', ['deleted', 'overwritten', 'emptied'])
def test_a_shard_that_does_not_read_stops_in_one_line_naming_it(built, tmp_path, damage):
    """A whole shard unreadable (deleted, random bytes, emptied): no record of it is skipped quietly;
    the pipeline stops with DataError naming the file (config.run prints it as one `error:` line)."""
    import glob
    import shutil
    data_dir = str(tmp_path / 'tfds')
    shutil.copytree(built[0], data_dir)
    src = pipeline.TfdsSource('video_csv', data_dir)  # opened while the shard is intact
    shard = glob.glob(f'{data_dir}/video_csv/*/video_csv-train.array_record*')[0]
    size = os.path.getsize(shard)
    os.remove(shard)
    if damage != 'deleted':
        open(shard, 'wb').write(os.urandom(size) if damage == 'overwritten' else b'')
    with pytest.raises(pipeline.DataError) as e:
        next(iter(make([src])))
    message = str(e.value)
    assert message.startswith(f'dataset shard {shard} does not read (') and '\n' not in message, message
    assert 'rebuild the dataset' in message and pipeline.DataError.one_line
