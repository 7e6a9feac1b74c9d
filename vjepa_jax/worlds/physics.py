"""A synthetic physics world: NumPy only, deterministic from a seed.

A box (size x size pixels, y down) holds 1-3 discs or squares with mass (= area), under
gravity along one of four directions, bouncing elastically off the box edges, off each
other and off an optional interior wall; an optional occluder (a full-height screen)
slides across in front of everything. Squares collide as their inscribed discs.

Motion per frame uses `substeps` exact constant-acceleration steps:
    x <- x + v dt + a dt^2 / 2,   v <- v + a dt     (dt = 1 / substeps frames)
so kinetic + potential energy, E = sum m |v|^2 / 2 - m a . x, is conserved between
events; a bounce mirrors the position and sets the speed that keeps E (walls), or keeps
momentum and kinetic energy (pairs, elastic).

Each video carries its latent facts (FACTS: number of objects, gravity direction, speed
class, whether objects collided; also the raw velocities, event counts and layout).

Violation-of-expectation pairs (make_pair): a possible video and an impossible twin that
breaks one law (VIOLATIONS) at a known frame b. The twins are the same simulation up to
b, so frames 0..b-1 are identical; from b on the impossible one differs visibly:
  vanish             the object disappears while hidden behind the occluder; IntPhys-style,
                     the pair comes with a second one that balances object presence: a
                     possible video without the object at all and an impossible one where it
                     appears from behind the occluder (make_pair's 'never' / 'appear'), so a
                     model cannot win by how many objects a video shows
  teleport           the object jumps to a far place and goes on
  pass_through_wall  the object crosses the interior wall instead of bouncing
  change_colour      the object takes another colour
  change_shape       disc <-> square
  float              the object accelerates against gravity

    frames, traj, facts = physics.sample_video(np.random.default_rng(0), physics.WorldConfig())
    pair = physics.make_pair(np.random.default_rng(1), physics.WorldConfig(), 'vanish')
    physics.write_world('world/', physics.WorldConfig(), {'train': 300, 'validation': 100}, pairs_per_kind=16)
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

GRAVITY_DIRECTIONS = ('down', 'up', 'left', 'right')
GRAVITY_VECTORS = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # (dy, dx) per direction
SPEED_CLASSES = ('slow', 'medium', 'fast')
SHAPES = ('disc', 'square')
VIOLATIONS = ('vanish', 'teleport', 'pass_through_wall', 'change_colour', 'change_shape', 'float')
FACTS = {'num_objects': 3, 'gravity': 4, 'speed': 3, 'collision': 2}  # probe targets: name -> classes
PALETTE = np.array([[230, 60, 50], [60, 200, 70], [70, 110, 240], [240, 210, 50], [210, 80, 220],
                    [60, 220, 220]], np.float64)
WALL_COLOUR = np.array([150, 150, 150], np.float64)
WORLD_FORMAT = 2  # write_world's layout and facts: a world written by another format is rewritten


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    size: int = 64
    num_frames: int = 32
    fps: int = 8
    max_objects: int = 3
    radius: tuple = (4.0, 7.0)               # px
    speed_edges: tuple = (0.6, 1.2, 1.8, 2.4)  # px/frame: initial speeds are drawn in one of these ranges
    speed_fact_edges: tuple = (1.7, 2.15)    # px/frame: the `speed` fact is the class of the mean |v|
                                             # over frames and objects (about tertiles at these settings)
    gravity: float = 0.15                    # px/frame^2
    substeps: int = 8
    occluder_prob: float = 0.5
    occluder_width: float = 18.0             # > 2 * max radius: hides any object
    occluder_speed: tuple = (0.5, 1.0)       # px/frame
    wall_prob: float = 0.3
    wall_width: float = 4.0
    break_range: tuple = (0.35, 0.6)         # impossible events start in this fraction of the clip
    min_visible_diff: int = 40               # impossible twin: at least this many changed pixels after b

    def __post_init__(self):
        if self.occluder_width <= 2 * self.radius[1]:
            raise ValueError(f'occluder_width={self.occluder_width} does not hide an object of radius '
                             f'{self.radius[1]}: set it above {2 * self.radius[1]} (twice the largest radius)')


@dataclasses.dataclass
class Scene:
    """Initial state. pos, vel (K, 2) as (y, x) px and px/frame; radius, mass (K,);
    colour (K, 3); shape (K,) index into SHAPES. wall_x: interior wall centre (nan: none);
    occluder (x at frame 0, x velocity) or None."""
    pos: np.ndarray
    vel: np.ndarray
    radius: np.ndarray
    mass: np.ndarray
    colour: np.ndarray
    shape: np.ndarray
    gravity: int
    speed: int
    background: np.ndarray
    texture_seed: int
    wall_x: float = float('nan')
    occluder: tuple | None = None
    occluder_colour: np.ndarray = dataclasses.field(default_factory=lambda: np.array([110.0, 100.0, 90.0]))

    @property
    def accel(self) -> np.ndarray:
        return GRAVITY_VECTORS[self.gravity]


@dataclasses.dataclass(frozen=True)
class Violation:
    kind: str
    obj: int
    frame: int
    target: tuple = ()          # teleport: new (y, x)
    colour: tuple = ()          # change_colour: new colour


def occluder_x(scene: Scene, t) -> float:
    x0, vx = scene.occluder
    return x0 + vx * np.asarray(t, np.float64)


# ----------------------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------------------
def _reflect(pos, vel, accel, k, axis, new_x, direction):
    """Mirror object k's coordinate to new_x, moving in `direction` (+1 / -1) along axis, with
    the speed that keeps its energy exact: v'^2 = v^2 + 2 a (x' - x)."""
    v2 = vel[k, axis] ** 2 + 2 * accel[k, axis] * (new_x - pos[k, axis])
    pos[k, axis], vel[k, axis] = new_x, direction * np.sqrt(max(v2, 0.0))


def _bounce_edges(pos, vel, accel, radius, size, alive, events, frame):
    for k in np.flatnonzero(alive):
        for axis in range(2):
            lo, hi = radius[k], size - radius[k]
            if pos[k, axis] < lo:
                _reflect(pos, vel, accel, k, axis, 2 * lo - pos[k, axis], 1.0)
                events.append((frame, 'edge', int(k), -1))
            elif pos[k, axis] > hi:
                _reflect(pos, vel, accel, k, axis, 2 * hi - pos[k, axis], -1.0)
                events.append((frame, 'edge', int(k), -1))


def _bounce_wall(pos, vel, accel, radius, wall_x, half, side, passing, alive, events, frame):
    """Interior wall [wall_x - half, wall_x + half] (full height); side (K,) = -1 left, +1 right."""
    for k in np.flatnonzero(alive):
        x, r = pos[k, 1], radius[k]
        if passing[k]:
            if side[k] < 0 and x - r > wall_x + half or side[k] > 0 and x + r < wall_x - half:
                side[k], passing[k] = -side[k], False  # fully across: a normal object again
            continue
        if side[k] < 0 and x + r > wall_x - half:
            _reflect(pos, vel, accel, k, 1, 2 * (wall_x - half - r) - x, -1.0)
            events.append((frame, 'wall', int(k), -1))
        elif side[k] > 0 and x - r < wall_x + half:
            _reflect(pos, vel, accel, k, 1, 2 * (wall_x + half + r) - x, 1.0)
            events.append((frame, 'wall', int(k), -1))


def _collide(pos, vel, radius, mass, alive, events, frame):
    """Elastic collisions of approaching overlapping pairs (momentum and kinetic energy kept)."""
    live = np.flatnonzero(alive)
    for a in range(len(live)):
        for b in range(a + 1, len(live)):
            i, j = live[a], live[b]
            d = pos[i] - pos[j]
            dist = float(np.hypot(*d))
            if dist >= radius[i] + radius[j] or dist == 0.0:
                continue
            n = d / dist
            approach = float(np.dot(vel[i] - vel[j], n))
            if approach >= 0:
                continue
            vel[i] -= 2 * mass[j] / (mass[i] + mass[j]) * approach * n
            vel[j] += 2 * mass[i] / (mass[i] + mass[j]) * approach * n
            events.append((frame, 'collision', int(i), int(j)))


def simulate(scene: Scene, cfg: WorldConfig, violation: Violation | None = None) -> dict:
    """-> {'pos', 'vel' (T, K, 2), 'visible' (T, K) bool, 'colour' (T, K, 3), 'shape' (T, K),
    'events' [(frame, 'edge' | 'wall' | 'collision', i, j)]}. Frame t is the state after t
    frame steps; a violation at frame b acts on the step into frame b and after."""
    k_count, steps = len(scene.radius), cfg.substeps
    pos, vel = scene.pos.astype(np.float64).copy(), scene.vel.astype(np.float64).copy()
    accel = np.tile(scene.accel * cfg.gravity, (k_count, 1))
    alive = np.ones(k_count, bool)
    colour = np.repeat(scene.colour[None].astype(np.float64), cfg.num_frames, 0)
    shape = np.repeat(scene.shape[None], cfg.num_frames, 0)
    has_wall = not np.isnan(scene.wall_x)
    side = np.sign(pos[:, 1] - scene.wall_x) if has_wall else np.zeros(k_count)
    passing = np.zeros(k_count, bool)
    out_pos, out_vel, visible, events = [pos.copy()], [vel.copy()], [alive.copy()], []
    dt = 1.0 / steps
    for t in range(1, cfg.num_frames):
        v = violation
        if v is not None and t == v.frame:
            if v.kind == 'float':
                accel[v.obj] = -accel[v.obj]
            elif v.kind == 'pass_through_wall':
                passing[v.obj] = True
        for _ in range(steps):
            pos += vel * dt + 0.5 * accel * dt * dt
            vel += accel * dt
            _bounce_edges(pos, vel, accel, scene.radius, cfg.size, alive, events, t)
            if has_wall:
                _bounce_wall(pos, vel, accel, scene.radius, scene.wall_x, cfg.wall_width / 2, side, passing, alive, events, t)
            _collide(pos, vel, scene.radius, scene.mass, alive, events, t)
        if v is not None and t == v.frame:
            if v.kind == 'vanish':
                alive[v.obj] = False
            elif v.kind == 'teleport':
                pos[v.obj] = v.target
            elif v.kind == 'change_colour':
                colour[t:, v.obj] = v.colour
            elif v.kind == 'change_shape':
                shape[t:, v.obj] = 1 - shape[t, v.obj]
        out_pos.append(pos.copy())
        out_vel.append(vel.copy())
        visible.append(alive.copy())
    return {'pos': np.stack(out_pos), 'vel': np.stack(out_vel), 'visible': np.stack(visible), 'colour': colour,
            'shape': shape, 'events': events}


def energy(scene: Scene, traj: dict, cfg: WorldConfig) -> np.ndarray:
    """(T,) kinetic + potential energy of the visible objects."""
    m = scene.mass[None, :]
    kinetic = 0.5 * m * np.square(traj['vel']).sum(-1)
    potential = -m * cfg.gravity * (traj['pos'] @ scene.accel)
    return ((kinetic + potential) * traj['visible']).sum(-1)


# ----------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------
def object_masks(scene: Scene, traj: dict, t: int, size: int) -> np.ndarray:
    """(K, H, W) bool: the pixels each object covers at frame t (ignoring what is in front)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    out = np.zeros((len(scene.radius), size, size), bool)
    for k in range(len(scene.radius)):
        if not traj['visible'][t, k]:
            continue
        (y, x), r = traj['pos'][t, k], scene.radius[k]
        if traj['shape'][t, k] == 1:
            out[k] = (np.abs(yy - y) <= r) & (np.abs(xx - x) <= r)
        else:
            out[k] = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    return out


def occluder_mask(scene: Scene, t: int, cfg: WorldConfig) -> np.ndarray:
    """(H, W) bool: the occluder's pixels at frame t (all False without one)."""
    xx = np.arange(cfg.size, dtype=np.float64) + 0.5
    cols = np.zeros(cfg.size, bool) if scene.occluder is None else np.abs(xx - occluder_x(scene, t)) <= cfg.occluder_width / 2
    return np.broadcast_to(cols[None, :], (cfg.size, cfg.size))


def render(scene: Scene, traj: dict, cfg: WorldConfig) -> np.ndarray:
    """(T, H, W, 3) uint8: background, interior wall, objects (in order), occluder in front."""
    size = cfg.size
    texture = np.random.default_rng(scene.texture_seed).normal(0, 5, (size, size, 1))
    base = np.clip(scene.background[None, None] + texture, 0, 255)
    if not np.isnan(scene.wall_x):
        xx = np.arange(size) + 0.5
        base[:, np.abs(xx - scene.wall_x) <= cfg.wall_width / 2] = WALL_COLOUR
    screen = scene.occluder_colour[None, None] + (np.arange(size) // 4 % 2)[:, None, None] * 25.0  # striped
    screen = np.broadcast_to(screen, (size, size, 3))
    frames = np.empty((cfg.num_frames, size, size, 3), np.float64)
    for t in range(cfg.num_frames):
        frame = base.copy()
        for k, mask in enumerate(object_masks(scene, traj, t, size)):
            frame[mask] = traj['colour'][t, k]
        occ = occluder_mask(scene, t, cfg)
        frame[occ] = screen[occ]
        frames[t] = frame
    return np.round(frames).astype(np.uint8)


# ----------------------------------------------------------------------------------------
# Scenes, facts, violation pairs
# ----------------------------------------------------------------------------------------
def sample_scene(rng: np.random.Generator, cfg: WorldConfig, *, wall: bool | None = None,
                 occluder: bool | None = None) -> Scene:
    """A random scene; wall / occluder force one in or out (None: by their probabilities)."""
    k_count = int(rng.integers(1, cfg.max_objects + 1))
    size = cfg.size
    wall = rng.random() < cfg.wall_prob if wall is None else wall
    wall_x = float(rng.uniform(0.4, 0.6) * size) if wall else float('nan')
    radius = rng.uniform(*cfg.radius, k_count)
    pos = np.zeros((k_count, 2))
    for k in range(k_count):  # non-overlapping, inside the box and clear of the wall
        for _ in range(200):
            p = rng.uniform(radius[k], size - radius[k], 2)
            clear_wall = not wall or abs(p[1] - wall_x) > radius[k] + cfg.wall_width / 2 + 1
            if clear_wall and all(np.hypot(*(p - pos[j])) > radius[k] + radius[j] + 1 for j in range(k)):
                break
        pos[k] = p
    speed = int(rng.integers(len(SPEED_CLASSES)))
    magnitude = rng.uniform(cfg.speed_edges[speed], cfg.speed_edges[speed + 1], k_count)
    angle = rng.uniform(0, 2 * np.pi, k_count)
    vel = np.stack([np.sin(angle), np.cos(angle)], 1) * magnitude[:, None]
    colour = PALETTE[rng.permutation(len(PALETTE))[:k_count]]
    occluder_on = rng.random() < cfg.occluder_prob if occluder is None else occluder
    occ = None
    if occluder_on:
        vx = rng.uniform(*cfg.occluder_speed) * rng.choice([-1.0, 1.0])
        occ = (float(rng.uniform(0, size)), float(vx))
    return Scene(pos=pos, vel=vel, radius=radius, mass=radius ** 2, colour=colour,
                 shape=rng.integers(0, 2, k_count), gravity=int(rng.integers(len(GRAVITY_DIRECTIONS))), speed=speed,
                 background=rng.uniform(15, 55, 3), texture_seed=int(rng.integers(2 ** 31)), wall_x=wall_x,
                 occluder=occ)


def facts(scene: Scene, traj: dict, cfg: WorldConfig) -> dict:
    """The video's latent facts: the probe targets (FACTS, as class indices) and raw values.
    `speed` is the observed one, the mean |v| over frames and objects: under gravity the drawn
    initial speed soon stops showing."""
    kinds = [e[1] for e in traj['events']]
    mean_speed = float(np.mean(np.linalg.norm(traj['vel'], axis=-1)))
    return {'num_objects': len(scene.radius) - 1, 'gravity': scene.gravity,
            'speed': int(np.searchsorted(cfg.speed_fact_edges, mean_speed)), 'mean_speed': round(mean_speed, 4),
            'collision': int('collision' in kinds), 'collisions': kinds.count('collision'),
            'edge_bounces': kinds.count('edge'), 'wall_bounces': kinds.count('wall'),
            'occluder': int(scene.occluder is not None), 'wall': int(not np.isnan(scene.wall_x)),
            'velocity': np.round(scene.vel, 4).tolist(), 'radius': np.round(scene.radius, 4).tolist(),
            'shape': [SHAPES[s] for s in scene.shape]}


def video_rng(seed: int, split_index: int, i: int) -> np.random.Generator:
    """The generator of video i of a world's split (splits indexed in sorted name order)."""
    return np.random.default_rng([seed, split_index, i])


def sample_video(rng: np.random.Generator, cfg: WorldConfig) -> tuple:
    """-> (frames (T, H, W, 3) uint8, trajectory, facts) of a random possible video."""
    scene = sample_scene(rng, cfg)
    traj = simulate(scene, cfg)
    return render(scene, traj, cfg), traj, facts(scene, traj, cfg)


def _choose_violation(rng, kind: str, scene: Scene, traj: dict, cfg: WorldConfig):
    """A violation of `kind` for this scene and its possible trajectory (None: the scene does not allow one)."""
    lo, hi = (int(f * cfg.num_frames) for f in cfg.break_range)
    obj, frame = int(rng.integers(len(scene.radius))), int(rng.integers(lo, hi + 1))
    if kind == 'pass_through_wall':
        hits = [(f, i) for f, what, i, _ in traj['events'] if what == 'wall' and lo <= f <= hi]
        if not hits:
            return None
        frame, obj = hits[0]
        return Violation(kind, obj, frame)
    if kind == 'teleport':
        r, here = scene.radius[obj], traj['pos'][frame, obj]
        for _ in range(100):
            p = rng.uniform(r, cfg.size - r, 2)
            room_ok = np.isnan(scene.wall_x) or (
                np.sign(p[1] - scene.wall_x) == np.sign(here[1] - scene.wall_x)
                and abs(p[1] - scene.wall_x) > r + cfg.wall_width / 2 + 1)
            others_ok = all(np.hypot(*(p - traj['pos'][frame, j])) > r + scene.radius[j] + 1
                            for j in range(len(scene.radius)) if j != obj)
            if room_ok and others_ok and np.hypot(*(p - here)) > 0.4 * cfg.size:
                return Violation(kind, obj, frame, target=tuple(float(x) for x in p))
        return None
    if kind == 'change_colour':
        used = {tuple(c) for c in scene.colour}
        choices = [c for c in PALETTE if tuple(c) not in used]
        return Violation(kind, obj, frame, colour=tuple(float(x) for x in choices[int(rng.integers(len(choices)))]))
    return Violation(kind, obj, frame)  # vanish, change_shape, float


def _hidden(traj: dict, obj: int, frames: slice) -> dict:
    """traj with object obj invisible over `frames` (the motion unchanged)."""
    visible = traj['visible'].copy()
    visible[frames, obj] = False
    return {**traj, 'visible': visible}


def make_pair(rng: np.random.Generator, cfg: WorldConfig, kind: str, max_tries: int = 200) -> dict:
    """A possible video and its impossible twin breaking `kind` at a known frame:
    {'possible', 'impossible' (T, H, W, 3) uint8, 'violation', 'facts', 'scene',
     'trajectories' (possible, impossible)}. A vanish pair also has 'never' (possible: the
    object is never there) and 'appear' (impossible: it appears from behind the screen at the
    break frame): the four videos show the object for the same number of frames in all. The
    vanishing object touches no other object, so the others move the same in all four."""
    if kind not in VIOLATIONS:
        raise ValueError(f'violation {kind!r}: choose one of {VIOLATIONS}')
    for _ in range(max_tries):
        scene = sample_scene(rng, cfg, wall=True if kind == 'pass_through_wall' else None,
                             occluder=False if kind == 'vanish' else None)
        possible = simulate(scene, cfg)
        violation = _choose_violation(rng, kind, scene, possible, cfg)
        if violation is None:
            continue
        if kind == 'vanish':  # a screen that hides the object at the break frame and moves on
            x_obj = possible['pos'][violation.frame, violation.obj, 1]
            vx = -np.sign(possible['vel'][violation.frame, violation.obj, 1] or 1.0) * rng.uniform(*cfg.occluder_speed)
            scene.occluder = (float(x_obj - vx * violation.frame), float(vx))
        if kind == 'vanish' and any(e[1] == 'collision' and violation.obj in e[2:] for e in possible['events']):
            continue  # a hidden object would still push the others
        impossible = simulate(scene, cfg, violation)
        a, b = render(scene, possible, cfg), render(scene, impossible, cfg)
        twins = [(a, b)]
        out = {'possible': a, 'impossible': b}
        if kind == 'vanish':
            out['never'], out['appear'] = (render(scene, _hidden(possible, violation.obj, frames), cfg)
                                           for frames in (slice(None), slice(0, violation.frame)))
            twins.append((out['never'], out['appear']))
        changed = [np.any(x != y, axis=-1) for x, y in twins]
        if kind == 'vanish' and any(c[violation.frame].any() for c in changed):
            continue  # the object must vanish (and appear) unseen, behind the screen
        if all(c[violation.frame:].sum() >= cfg.min_visible_diff for c in changed):
            return {**out, 'violation': violation, 'facts': facts(scene, possible, cfg),
                    'scene': scene, 'trajectories': (possible, impossible)}
    raise RuntimeError(f'no {kind} pair after {max_tries} scenes: loosen WorldConfig.break_range')


# ----------------------------------------------------------------------------------------
# Writing the world: videos + facts (a dataset for physics_tfds.PhysicsWorld) and VoE pairs
# ----------------------------------------------------------------------------------------
def write_world(folder: str, cfg: WorldConfig, counts: dict, pairs_per_kind: int, seed: int = 0,
                kinds=VIOLATIONS, log=print) -> dict:
    """Videos (mp4) with facts for each split, and violation-of-expectation pairs:
      folder/{split}/{index}.mp4, folder/{split}.jsonl   one {"path", "facts"} row per video
      folder/voe/{kind}_{index}_{possible|impossible|never|appear}.mp4, folder/voe/pairs.csv
            ('possible impossible property break_frame group' per line, see
            evals/intuitive_physics; a vanish quadruplet is two lines of one group)
      folder/world.json                                  what was written (the cache key)
    A folder already holding the same world is kept as it is. -> the world.json dict."""
    from vjepa_jax.data.decode import encode_video
    spec = json.loads(json.dumps({'format': WORLD_FORMAT, 'config': dataclasses.asdict(cfg),
                                  'counts': dict(sorted(counts.items())),
                                  'pairs_per_kind': pairs_per_kind, 'seed': seed, 'kinds': list(kinds)}))
    marker = os.path.join(folder, 'world.json')
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == spec:
                log(f'physics world: reusing {folder}')
                return spec
    os.makedirs(folder, exist_ok=True)
    for s, (split, n) in enumerate(sorted(counts.items())):
        os.makedirs(os.path.join(folder, split), exist_ok=True)
        with open(os.path.join(folder, f'{split}.jsonl'), 'w') as rows:
            for i in range(n):
                frames, _, fact = sample_video(video_rng(seed, s, i), cfg)
                path = f'{split}/{i:05d}.mp4'
                encode_video(frames, os.path.join(folder, path), fps=cfg.fps)
                rows.write(json.dumps({'path': path, 'facts': fact}) + '\n')
        log(f'physics world: {n} {split} videos')
    voe = os.path.join(folder, 'voe')
    os.makedirs(voe, exist_ok=True)
    with open(os.path.join(voe, 'pairs.csv'), 'w') as pairs:
        for k, kind in enumerate(kinds):
            for i in range(pairs_per_kind):
                pair = make_pair(np.random.default_rng([seed, 1000 + VIOLATIONS.index(kind), i]), cfg, kind)
                group = f'{kind}_{i:03d}'
                for twins in (('possible', 'impossible'), ('never', 'appear')):
                    if twins[0] not in pair:
                        continue
                    for w in twins:
                        encode_video(pair[w], os.path.join(voe, f'{group}_{w}.mp4'), fps=cfg.fps)
                    pairs.write(f'{group}_{twins[0]}.mp4 {group}_{twins[1]}.mp4 {kind} {pair["violation"].frame} {group}\n')
    log(f'physics world: {pairs_per_kind} violation pairs x {len(kinds)} kinds in {voe}')
    with open(marker, 'w') as f:
        json.dump(spec, f, indent=1)
    return spec
