"""Will it fit? Compile the pretraining step ahead of time for a Cloud TPU topology on any
machine (no TPU needed: `pip install 'jax[tpu]'` brings libtpu's compiler) and print per-chip
memory and FLOPs.

  python -m vjepa_jax.tools.aot_compile --config=configs/pretrain/vitl16.py --topology=v5p:2x2x2 \\
      --batch_per_chip=24 [--config.mesh.fsdp=-1 --config.model.remat_policy=full ...]
  python -m vjepa_jax.tools.aot_compile --config=configs/pretrain/vith16.py \\
      --topology=v5e:4x4,v6e:4x4 --batch_per_chip=8,16 --output=aot.jsonl     # a table (rows appended)

Topology names are libtpu's: v5e:RxC (v5litepod-N), v5p:AxBxC (v5p-2N: N chips), v6e:RxC,
v4:AxBxC. The mesh defaults to FSDP over all chips (mesh.data=1, mesh.fsdp=-1); a
--config.mesh.* flag replaces that field. Compiling
is the real TPU compiler: a program that does not fit fails with RESOURCE_EXHAUSTED,
which is reported as "no".
"""
from __future__ import annotations

import json
import os
import re
import time

from absl import flags

from vjepa_jax import config as config_lib

FLAGS = flags.FLAGS
_CONFIG = None  # the --config flag, when run as a tool

def define_flags():
    """Command-line flags (defined only when run as a tool, so both tools import together)."""
    global _CONFIG
    _CONFIG = config_lib.define_config_flag(help_string='pretraining config (configs/pretrain/...)')
    flags.DEFINE_string('topology', 'v5p:2x2x2', 'TPU topology name(s), comma-separated (libtpu names)')
    flags.DEFINE_string('batch_per_chip', '24', 'clips per chip, comma-separated values to try')
    flags.DEFINE_integer('num_slices', 1, 'slices (multi-slice over DCN)')
    flags.DEFINE_string('output', None, 'append one JSON line per compile here')

# usable HBM per chip as libtpu reports it in RESOURCE_EXHAUSTED messages (GiB)
HBM_GIB = {'TPU v5 lite': 15.75, 'TPU v5': 95.74, 'TPU v6 lite': 31.25, 'TPU v4': 30.75}


def topology_devices(topology: str, num_slices: int = 1) -> list:
    """The (unattached) devices of a named TPU topology; needs libtpu (jax[tpu])."""
    from jax.experimental import topologies
    try:
        return topologies.get_topology_desc(platform='tpu', topology_name=topology, num_slices=num_slices).devices
    except Exception as e:
        raise ValueError(f'topology {topology!r}: {str(e).splitlines()[0][:200]} (install jax[tpu] for libtpu; '
                         f'names look like v5e:4x4, v5p:2x2x2, v6e:4x4)') from None


def aot_one(config, devices: list, batch_per_chip: int, topology: str = '', num_slices: int = 1) -> dict:
    """Compile the train step for `devices` (a topology's, or real ones) -> per-chip figures."""
    from vjepa_jax import flops, masks, sharding, train_state
    kind = devices[0].device_kind
    chips = len(devices)
    config.data.global_batch_size = batch_per_chip * chips
    mesh = sharding.make_mesh(config.mesh, devices)
    sharding.check_batch(config.data.global_batch_size, mesh)
    trainer = train_state.make_trainer(config)
    sampler = masks.make_sampler(config, trainer.grid)
    _, abstract_state = train_state.state_layout(trainer, config, mesh)
    m = config.model
    row = {'variant': m.variant, 'frames': m.num_frames, 'img_size': m.img_size, 'topology': topology,
           'slices': num_slices, 'chips': chips, 'device_kind': kind, 'batch_per_chip': batch_per_chip,
           'mesh': dict(mesh.shape), 'dtype': m.dtype, 'remat': m.remat_policy, 'scan': m.scan_layers,
           'query_chunk': m.attention_query_chunk,
           'hbm_gib': HBM_GIB.get(kind)}
    row['model_tflop_per_chip_step'] = flops.step_flops(config, sampler.counts) * batch_per_chip / 1e12
    peak = flops.peak_flops(kind)
    try:
        _, stats = train_state.compile_step(trainer, abstract_state, train_state.batch_specs(config, sampler, mesh), mesh)
    except Exception as e:  # the TPU compiler's out-of-memory verdict
        text = str(e)
        if 'RESOURCE_EXHAUSTED' not in text:
            raise
        row.update(fits=False, error=text.strip().splitlines()[0][:300])
        need = re.search(r'\(([\d.]+)G\) exceeds', text)
        if need:  # what the compiler found it needs beyond the arguments
            row['temp_gib'] = float(need.group(1))
        return row
    gib = 2.0 ** 30
    row.update(compile_s=stats['compile_s'], argument_gib=stats['argument_bytes'] / gib,
               temp_gib=stats['temp_bytes'] / gib, peak_gib=stats['peak_bytes'] / gib)
    row['fits'] = None if row['hbm_gib'] is None else row['peak_gib'] <= row['hbm_gib']
    if peak:  # the step time at 100% of peak: a floor for planning
        row['min_step_s'] = row['model_tflop_per_chip_step'] * 1e12 / peak
    return row


def describe(row: dict) -> str:
    head = (f'{row["variant"]} {row["frames"]}x{row["img_size"]} on {row["topology"]} ({row["chips"]} x '
            f'{row["device_kind"]}), {row["batch_per_chip"]} clips/chip, mesh {row["mesh"]}, remat {row["remat"]}')
    if 'error' in row:
        return f'{head}: does NOT fit ({row["error"]})'
    verdict = 'fits' if row['fits'] else 'does NOT fit'
    if row['hbm_gib'] is None:
        verdict = 'compiled (HBM of this chip unknown)'
    return (f'{head}: {verdict}: peak {row["peak_gib"]:.2f} GiB of {row["hbm_gib"]} GiB per chip (params+opt+batch '
            f'{row["argument_gib"]:.2f}, temporaries {row["temp_gib"]:.2f}); '
            f'{row["model_tflop_per_chip_step"]:.1f} TFLOP/chip/step; compiled in {row["compile_s"]:.0f}s')


def main(argv):
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')
    if _CONFIG.value is None:
        raise config_lib.UsageError('pass --config=configs/pretrain/<name>.py')
    config = _CONFIG.value
    given = set(FLAGS['config'].override_values)  # FSDP over all chips, field by field unless set on the command line
    config.mesh.update({k: v for k, v in (('data', 1), ('fsdp', -1)) if f'mesh.{k}' not in given})
    rows = []
    for topology in FLAGS.topology.split(','):
        for batch in FLAGS.batch_per_chip.split(','):
            t0 = time.time()
            try:
                row = aot_one(config, topology_devices(topology, FLAGS.num_slices), int(batch), topology,
                              FLAGS.num_slices)
            except ValueError as e:
                raise SystemExit(f'error: {FLAGS["config"].config_filename} on {topology}: {e}')
            row.update(config=FLAGS['config'].config_filename, wall_s=round(time.time() - t0, 1))
            print(describe(row), flush=True)
            rows.append(row)
            if FLAGS.output:
                with open(FLAGS.output, 'a') as f:
                    f.write(json.dumps(row) + '\n')
    if FLAGS.output:
        rows = [json.loads(line) for line in open(FLAGS.output) if line.strip()]
    if len(rows) > 1:
        print(markdown_table(rows))


def markdown_table(rows: list) -> str:
    lines = ['| model | clip | topology | chips | clips/chip | remat | attention chunk | peak GiB/chip | HBM GiB | fits |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        peak = f'{r["peak_gib"]:.1f}' if 'peak_gib' in r else f'OOM (temporaries {r.get("temp_gib", "?")})'
        lines.append(f'| {r["variant"]} | {r["frames"]}x{r["img_size"]} | {r["topology"]} | {r["chips"]} | '
                     f'{r["batch_per_chip"]} | {r["remat"]} | {r.get("query_chunk") or "-"} | {peak} | {r["hbm_gib"]} | '
                     f'{ {True: "yes", False: "no"}.get(r["fits"], "?") } |')
    return '\n'.join(lines)


def run():
    define_flags()
    config_lib.run(main)


if __name__ == '__main__':
    run()
