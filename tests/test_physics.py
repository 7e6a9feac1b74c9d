"""The synthetic physics world: its laws, its violation pairs, its dataset, and the
intuitive-physics evaluation's windowing on frame folders."""
import dataclasses
import hashlib
import os

import cv2
import numpy as np
import pytest

from vjepa_jax.data import decode
from vjepa_jax.worlds import physics

CFG = physics.WorldConfig()


@pytest.fixture(scope='module')
def micro_jepa():
    """A randomly initialised (encoder, predictor, target encoder) of the demo's shapes."""
    from vjepa_jax import pretrained
    from vjepa_jax.config import load_config
    return pretrained.build_jepa(load_config('configs/demo.py:test'), seed=0)


def _scene(pos, vel, radius, gravity=0, wall_x=float('nan'), occluder=None, shape=None):
    pos, vel, radius = (np.asarray(x, np.float64) for x in (pos, vel, radius))
    k = len(radius)
    return physics.Scene(pos=pos, vel=vel, radius=radius, mass=radius ** 2, colour=physics.PALETTE[:k].copy(),
                         shape=np.zeros(k, int) if shape is None else np.asarray(shape), gravity=gravity, speed=0,
                         background=np.array([30.0, 30.0, 30.0]), texture_seed=0, wall_x=wall_x, occluder=occluder)


@pytest.mark.parametrize('seed', range(6))
def test_energy_is_conserved_through_bounces_and_collisions(seed):
    rng = np.random.default_rng(seed)
    scene = physics.sample_scene(rng, CFG, wall=bool(seed % 2))
    traj = physics.simulate(scene, dataclasses.replace(CFG, num_frames=64))
    e = physics.energy(scene, traj, CFG)
    assert traj['events'], 'nothing happened: the test would not test bounces'
    np.testing.assert_allclose(e, e[0], rtol=1e-9)


def test_collision_keeps_momentum_and_kinetic_energy():
    cfg = dataclasses.replace(CFG, gravity=0.0, num_frames=12)
    scene = _scene([[32, 20], [33, 44]], [[0, 2.0], [0, -1.0]], [6, 4])
    traj = physics.simulate(scene, cfg)
    assert [e[1] for e in traj['events']].count('collision') == 1
    m = scene.mass[None, :, None]
    momentum = (m * traj['vel']).sum(1)
    kinetic = (0.5 * m[..., 0] * np.square(traj['vel']).sum(-1)).sum(1)
    np.testing.assert_allclose(momentum, np.broadcast_to(momentum[0], momentum.shape), atol=1e-12)
    np.testing.assert_allclose(kinetic, kinetic[0], rtol=1e-12)
    assert traj['vel'][-1, 0, 1] < 2.0 and traj['vel'][-1, 1, 1] > -1.0  # they pushed each other back


def test_edge_and_wall_bounces_keep_objects_in_their_room():
    cfg = dataclasses.replace(CFG, gravity=0.0, num_frames=40)
    scene = _scene([[20, 10], [40, 50]], [[0.3, -2.0], [-1.1, 2.3]], [5, 5], wall_x=32.0)
    traj = physics.simulate(scene, cfg)
    x, r, half = traj['pos'][..., 1], scene.radius, cfg.wall_width / 2
    assert np.all(x[:, 0] + r[0] <= 32.0 - half + 1e-9) and np.all(x[:, 1] - r[1] >= 32.0 + half - 1e-9)
    assert np.all(traj['pos'] >= r[None, :, None] - 1e-9) and np.all(traj['pos'] <= cfg.size - r[None, :, None] + 1e-9)
    kinds = [e[1] for e in traj['events']]
    assert 'edge' in kinds and 'wall' in kinds
    speed = np.linalg.norm(traj['vel'], axis=-1)
    np.testing.assert_allclose(speed, speed[:1].repeat(len(speed), 0), rtol=1e-12)  # no gravity: |v| kept
    # a bounce flips the normal velocity: object 0 starts moving left and moves right after the edge
    assert traj['vel'][0, 0, 1] == -2.0 and np.any(traj['vel'][:, 0, 1] == 2.0)


def test_gravity_accelerates_along_its_direction():
    cfg = dataclasses.replace(CFG, num_frames=6)
    for g, direction in enumerate(physics.GRAVITY_VECTORS):
        scene = _scene([[32, 32]], [[0.0, 0.0]], [4], gravity=g)
        traj = physics.simulate(scene, cfg)
        np.testing.assert_allclose(traj['vel'][-1, 0], direction * cfg.gravity * 5, atol=1e-12)


def test_occluder_hides_what_is_behind_it():
    scene = _scene([[32, 32]], [[0.0, 0.0]], [6], occluder=(32.0, 0.0))
    cfg = dataclasses.replace(CFG, gravity=0.0, num_frames=2)
    frames = physics.render(scene, physics.simulate(scene, cfg), cfg)
    occ = physics.occluder_mask(scene, 0, cfg)
    assert not np.any(np.all(frames[0] == physics.PALETTE[0].astype(np.uint8), -1))  # fully hidden
    scene.occluder = (5.0, 0.0)  # screen moved aside: the object shows, the screen still covers its pixels
    frames = physics.render(scene, physics.simulate(scene, cfg), cfg)
    obj = physics.object_masks(scene, physics.simulate(scene, cfg), 0, cfg.size)[0]
    assert np.all(frames[0][obj & ~physics.occluder_mask(scene, 0, cfg)] == physics.PALETTE[0])
    assert occ.sum() == 18 * 64


@pytest.mark.parametrize('kind', physics.VIOLATIONS)
def test_impossible_twin_differs_only_after_its_break_frame(kind):
    for i in range(3):
        pair = physics.make_pair(np.random.default_rng([5, i]), CFG, kind)
        b = pair['violation'].frame
        lo, hi = (int(f * CFG.num_frames) for f in CFG.break_range)
        assert lo <= b <= hi
        np.testing.assert_array_equal(pair['possible'][:b], pair['impossible'][:b])
        changed = np.any(pair['possible'][b:] != pair['impossible'][b:], -1)
        assert changed.sum() >= CFG.min_visible_diff
        possible, impossible = pair['trajectories']
        np.testing.assert_array_equal(possible['pos'][:b], impossible['pos'][:b])
        if kind == 'vanish':  # unseen: hidden at b, and gone from the impossible twin from b on
            assert not changed[0].any() and not impossible['visible'][b:, pair['violation'].obj].any()
            # the balancing twins: never there (possible) and appearing at b (impossible)
            np.testing.assert_array_equal(pair['never'][:b], pair['appear'][:b])
            np.testing.assert_array_equal(pair['appear'][b:], pair['possible'][b:])
            np.testing.assert_array_equal(pair['never'][b:], pair['impossible'][b:])
            appeared = np.any(pair['never'][b:] != pair['appear'][b:], -1)
            assert not appeared[0].any() and appeared.sum() >= CFG.min_visible_diff
        if kind == 'pass_through_wall':  # the possible object bounced at b, the impossible one is across
            o, wall = pair['violation'].obj, pair['scene'].wall_x
            side = np.sign(possible['pos'][0, o, 1] - wall)
            assert np.all(np.sign(possible['pos'][:, o, 1] - wall) == side)
            assert np.any(np.sign(impossible['pos'][b:, o, 1] - wall) != side)


def test_world_is_deterministic_and_facts_match_the_scene():
    a = physics.sample_video(np.random.default_rng([3, 1]), CFG)
    b = physics.sample_video(np.random.default_rng([3, 1]), CFG)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[2] == b[2]
    facts = a[2]
    assert facts['num_objects'] + 1 == len(facts['radius'])
    assert facts['collision'] == int(facts['collisions'] > 0)
    edges = (0.0, *CFG.speed_fact_edges, np.inf)
    assert edges[facts['speed']] <= facts['mean_speed'] < edges[facts['speed'] + 1]
    assert facts['mean_speed'] == round(float(np.mean(np.linalg.norm(a[1]['vel'], axis=-1))), 4)


def test_world_videos_are_the_same_bytes_when_written_again(tmp_path):
    """Left to the encoder, the rgb -> yuv420p conversion gave different bytes on reruns (decoded
    frames up to 35 grey levels apart), so a fresh demo trained on other clips than the last."""
    frames = physics.sample_video(np.random.default_rng([3, 2]), CFG)[0]
    digests = set()
    for i in range(8):
        decode.encode_video(frames, str(tmp_path / f'{i}.mp4'), fps=CFG.fps)
        digests.add(hashlib.md5((tmp_path / f'{i}.mp4').read_bytes()).hexdigest())
    assert len(digests) == 1


def test_a_world_written_twice_is_the_same_bytes(tmp_path):
    for name in ('a', 'b'):
        physics.write_world(str(tmp_path / name), CFG, {'train': 3}, pairs_per_kind=1, kinds=('teleport',), log=print)
    files = sorted(p.relative_to(tmp_path / 'a') for p in (tmp_path / 'a').rglob('*') if p.is_file())
    assert len([f for f in files if f.suffix == '.mp4']) == 5  # 3 videos + one pair
    for f in files:
        assert (tmp_path / 'a' / f).read_bytes() == (tmp_path / 'b' / f).read_bytes(), f


def test_surprise_windows_before_the_break_are_identical(tmp_path, micro_jepa):
    """Frame folders (IntPhys layout, lossless PNG): windows that end before the break give
    the same surprise for both twins; a window that sees the break does not."""
    from vjepa_jax.evals import intuitive_physics as ip
    pair = physics.make_pair(np.random.default_rng(11), CFG, 'teleport')
    for which in ('possible', 'impossible'):
        os.makedirs(tmp_path / which)
        for t, frame in enumerate(pair[which]):
            cv2.imwrite(str(tmp_path / which / f'{t:03d}.png'), frame[:, :, ::-1])
    (tmp_path / 'pairs.csv').write_text(f'possible impossible teleport {pair["violation"].frame}\n')
    model = ip.SurpriseModel(*micro_jepa, ip.SurpriseConfig(window=8, context=4, stride=2, size=64))
    result = ip.evaluate_pairs(model, ip.read_pairs(str(tmp_path / 'pairs.csv')))[0]
    b, starts = pair['violation'].frame, np.arange(0, CFG.num_frames - 8 + 1, 2)
    before, after = starts + 8 <= b, starts > b
    s_p, s_i = np.array(result['possible']['surprise']), np.array(result['impossible']['surprise'])
    np.testing.assert_array_equal(s_p[before], s_i[before])
    assert np.all(s_p[after] != s_i[after])
    assert result['possible']['frames'] == (starts + 4).tolist()
    assert result['possible']['last_frames'] == (starts + 7).tolist()
    summary = ip.summarise([result])
    assert summary['teleport']['accuracy'] == 100.0 * result['correct'] + 50.0 * result['tie']


def test_token_reductions_equal_a_hand_computation(micro_jepa):
    """A step's surprise from its per-token errors: the mean (Garrido et al.), or the mean of the
    top_k largest; the model's per-step surprise is that reduction of its per-token surprise."""
    from vjepa_jax.evals import intuitive_physics as ip
    errors = np.array([[[0.1, 0.9, 0.3, 0.5], [0.2, 0.2, 0.8, 0.0]]])  # (windows 1, steps 2, tokens 4)
    np.testing.assert_allclose(ip.reduce_tokens(errors), [[0.45, 0.3]])
    np.testing.assert_allclose(ip.reduce_tokens(errors, 'top_k', 1), [[0.9, 0.8]])
    np.testing.assert_allclose(ip.reduce_tokens(errors, 'top_k', 2), [[0.7, 0.5]])
    np.testing.assert_allclose(ip.reduce_tokens(errors, 'top_k', 4), ip.reduce_tokens(errors))
    with pytest.raises(ValueError, match='1 <= top_k <= 4'):
        ip.reduce_tokens(errors, 'top_k', 5)
    frames = np.random.default_rng(0).normal(size=(10, 64, 64, 3)).astype(np.float32)
    cfg = ip.SurpriseConfig(window=8, context=4, stride=2, size=64, tokens='top_k', top_k=3)
    model = ip.SurpriseModel(*micro_jepa, cfg)
    per_token = model.token_windows(frames)
    assert per_token.shape[:2] == (2, 2)
    np.testing.assert_allclose(model.windows(frames), np.sort(per_token, -1)[..., -3:].mean(-1), rtol=1e-6)


def test_surprise_curves_aligned_on_the_break_equal_a_hand_computation(tmp_path):
    """The plot's curves: x = a window's last predicted frame minus the pair's break frame, each
    pair measured from its level before the break (the mean where the twins' surprises are equal),
    NaN where a pair has no window; and the plot is drawn."""
    from vjepa_jax.evals import intuitive_physics as ip
    row = lambda b, last, possible, impossible: {
        'property': 'teleport', 'group': f'b{b}', 'break_frame': b, 'correct': True, 'tie': False,
        'possible': {'frames': [f - 3 for f in last], 'last_frames': last, 'surprise': possible,
                     'score': max(possible)},
        'impossible': {'frames': [f - 3 for f in last], 'last_frames': last, 'surprise': impossible,
                       'score': max(impossible)}}
    group = [row(10, [8, 10, 12], [1.0, 3.0, 2.0], [1.0, 3.0, 5.0]),   # level (1 + 3) / 2 = 2
             row(11, [9, 11, 13], [4.0, 4.5, 5.0], [4.0, 6.0, 7.0])]   # level 4
    x, possible, impossible = ip.aligned_curves(group)
    np.testing.assert_array_equal(x, [-2, 0, 2])
    np.testing.assert_array_equal(possible, [[-1.0, 1.0, 0.0], [0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(impossible, [[-1.0, 1.0, 3.0], [0.0, 2.0, 3.0]])
    shifted = row(12, [9, 11], [1.0, 2.0], [1.0, 4.0])  # x -3 and -1: columns no other pair has
    x, possible, _ = ip.aligned_curves(group + [shifted])
    np.testing.assert_array_equal(x, [-3, -2, -1, 0, 2])
    np.testing.assert_array_equal(possible[2], [0.0, np.nan, 1.0, np.nan, np.nan])
    assert os.path.getsize(ip.plot_surprise(group + [shifted], str(tmp_path / 's.png'))) > 0


def test_groups_are_judged_by_summed_surprise():
    """IntPhys scoring: a quadruplet is right when its impossible videos together are more
    surprising than its possible ones, even if one of its pairs alone is wrong; a tie (both
    maxima in the frames the twins share) counts half, so chance stays 50 %."""
    from vjepa_jax.evals import intuitive_physics as ip
    row = lambda group, possible, impossible: {'group': group, 'property': 'vanish',
                                                'possible': {'score': possible}, 'impossible': {'score': impossible}}
    results = [row('q0', 1.0, 0.8), row('q0', 0.5, 1.0),   # one pair wrong, the group right
               row('q1', 1.0, 1.1), row('q1', 1.0, 0.5),   # one pair right, the group wrong
               row('line 5', 0.2, 0.3),                    # a pair without a group
               row('line 6', 0.7, 0.7)]                    # a tie
    summary = ip.summarise(results)['vanish']
    assert (summary['pairs'], summary['groups'], summary['ties']) == (6, 4, 1)
    assert summary['accuracy'] == pytest.approx(62.5) and summary['pair_accuracy'] == pytest.approx(3.5 / 6 * 100)


def test_world_pairs_list_groups_the_vanish_quadruplets(tmp_path):
    from vjepa_jax.evals import intuitive_physics as ip
    physics.write_world(str(tmp_path), CFG, {'train': 1}, pairs_per_kind=1, kinds=('vanish', 'teleport'), log=print)
    pairs = ip.read_pairs(str(tmp_path / 'voe' / 'pairs.csv'))
    assert [(p['property'], p['group'], os.path.basename(p['impossible'])) for p in pairs] == [
        ('vanish', 'vanish_000', 'vanish_000_impossible.mp4'), ('vanish', 'vanish_000', 'vanish_000_appear.mp4'),
        ('teleport', 'teleport_000', 'teleport_000_impossible.mp4')]
    assert all(os.path.exists(p[w]) for p in pairs for w in ('possible', 'impossible'))


def test_pairs_list_errors_name_the_line(tmp_path):
    from vjepa_jax.evals import intuitive_physics as ip
    bad = tmp_path / 'pairs.csv'
    bad.write_text('a.mp4 b.mp4 vanish 12\na.mp4 b.mp4\n')
    with pytest.raises(ValueError, match='pairs.csv:2'):
        ip.read_pairs(str(bad))
    with pytest.raises(FileNotFoundError, match='no such video'):
        ip.load_frames(str(tmp_path / 'missing.mp4'), ip.SurpriseConfig())
    with pytest.raises(ValueError, match='fewer than the 16-frame window'):
        ip.window_starts(10, ip.SurpriseConfig())


def test_fact_cues_read_gravity_from_acceleration_not_position():
    """worlds/fact_cues: the median acceleration gives gravity's direction; the mean position
    only hints at it (the demo's world: 100.0 against 50.6)."""
    from vjepa_jax.worlds import fact_cues
    cfg = physics.WorldConfig()
    (xt, yt), (xv, yv) = (fact_cues.split_table(cfg, fact_cues.simulate_split(cfg, 0, s, n))
                          for s, n in ((0, 60), (1, 40)))
    motion = fact_cues.ridge_accuracy(xt['motion'], yt['gravity'], xv['motion'], yv['gravity'], 4)
    position = fact_cues.ridge_accuracy(xt['position'], yt['gravity'], xv['position'], yv['gravity'], 4)
    assert motion >= 95.0 and position < motion - 20.0, (motion, position)
    assert xt['position'].shape == (60, 4) and xt['motion'].shape == (60, 5) and set(yt) == set(physics.FACTS)


def test_extrapolation_error_counts_what_gravity_explains():
    """worlds/fact_cues.extrapolation_error: with no gravity ballistic and constant-velocity
    extrapolation agree; with it, knowing gravity helps, but bounces leave most of the error."""
    from vjepa_jax.worlds import fact_cues
    cfg = physics.WorldConfig()
    err = fact_cues.extrapolation_error(cfg, fact_cues.simulate_split(cfg, 0, 0, 12), 6, range(8, 15, 2))
    assert 0 < err['ballistic'] < err['constant_velocity'] < err['displacement'], err
    flat_cfg = dataclasses.replace(cfg, gravity=0.0)
    flat = fact_cues.extrapolation_error(flat_cfg, fact_cues.simulate_split(flat_cfg, 0, 0, 12), 6, range(8, 15, 2))
    assert flat['ballistic'] == pytest.approx(flat['constant_velocity'])
