"""Config files and the command line every tool shares.

Configs are Python files with get_config(arg=None) returning an ml_collections.ConfigDict
(the recipes they start from are in recipes.py). A config path is taken as given when it
exists (absolute, or from the working directory), else from the repository root, so
`--config=configs/pretrain/tiny.py` works from any directory.

Every tool is `python -m vjepa_jax.<tool>` with absl flags and ml_collections' config flag:

    --config=FILE[:arg]      the config (arg is passed to get_config)
    --config.a.b=VALUE       any field; tuples as --config.a.b='(1,2)'; the config is locked,
                             so an unknown key or a value of the wrong type is a one-line error
    --helpconfig             print the resolved config and exit
    --workdir=DIR            where the tool writes (metrics.jsonl, checkpoints, results)
"""
from __future__ import annotations

import importlib.util
import os
import sys

import ml_collections

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UsageError(ValueError):
    """A wrong setting or input the user can fix; the entry points print it as one line."""


def repo_path(path: str) -> str:
    """`path` as given when it exists (absolute or from the working directory), else from the
    repository root (configs/..., tests/...). A ':arg' suffix is kept."""
    file, colon, arg = path.partition(':')
    if file and not os.path.exists(file) and not os.path.isabs(file) and '://' not in path:
        candidate = os.path.join(REPO_ROOT, file)
        if os.path.exists(candidate):
            file = candidate
    return file + colon + arg


def load_config(path: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
    """Load `FILE[:arg]` (resolved by repo_path) and set {dotted.key: value}. A missing file,
    a file without get_config or an unknown key raises a one-line UsageError."""
    file, _, arg = repo_path(path).partition(':')
    if not os.path.exists(file):
        raise UsageError(f'config file {file} not found: pass --config=configs/pretrain/<name>.py (from the '
                         f'repository root or any directory) or an absolute path')
    spec = importlib.util.spec_from_file_location('vjepa_config', file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise UsageError(f'config file {file} line {e.lineno}: {e.msg}') from None
    if not hasattr(module, 'get_config'):
        raise UsageError(f'config file {file} has no get_config(): define one returning a ConfigDict')
    config = module.get_config(arg) if arg else module.get_config()
    for key, value in (overrides or {}).items():
        set_field(config, key, value)
    return config


def get_field(config: ml_collections.ConfigDict, key: str):
    """config[a.b.c]; a key the config does not have raises a one-line UsageError naming it."""
    node, parts = config, key.split('.')
    for i, name in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or name not in node:
            raise UsageError(f'unknown config key {".".join(parts[:i + 1])!r} (in {key!r}): check the spelling '
                             f'(--helpconfig lists the fields)')
        node = node[name]
    return node


def set_field(config: ml_collections.ConfigDict, key: str, value) -> None:
    """config[a.b.c] = value, refusing keys the config does not have."""
    get_field(config, key)
    parent, _, leaf = key.rpartition('.')
    (get_field(config, parent) if parent else config)[leaf] = value


# ----------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------
def define_config_flag(default: str | None = None, help_string: str = 'config file FILE[:arg]'):
    """--config=FILE[:arg] with --config.a.b=VALUE overrides (a locked config)."""
    from ml_collections import config_flags
    return config_flags.DEFINE_config_file('config', repo_path(default) if default else None, help_string,
                                           lock_config=True)


def define_workdir_flag(default: str | None = None, help_string: str = 'where the outputs go'):
    from absl import flags
    return flags.DEFINE_string('workdir', default, help_string)


def _resolve_config_argv(argv: list) -> list:
    """--config=FILE[:arg] (or --config FILE[:arg]) resolved with repo_path, as --config=PATH
    (config_flags reads it from the cwd)."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a == '--config' and i + 1 < len(argv):
            a, i = '--config=' + argv[i + 1], i + 1
        if a.startswith('--config='):
            a = '--config=' + repo_path(a[len('--config='):])
        out.append(a)
        i += 1
    return out


def _config_arg(argv: list) -> str | None:
    """The FILE[:arg] of argv's --config=FILE[:arg], if any."""
    return next((a[len('--config='):] for a in argv if a.startswith('--config=')), None)


def _parse_flags(argv: list) -> list:
    """absl parsing with every mistake as one line: unknown flags, unknown config keys, values
    of the wrong type, a missing or broken config file."""
    from absl import flags
    given = _config_arg(argv)
    if given is not None and not os.path.exists(given.partition(':')[0]):
        sys.exit(f'error: config file {given.partition(":")[0]} not found: pass --config=configs/<...>.py (from the '
                 f'repository root or any directory) or an absolute path')
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(f'error: {e}')
    except AttributeError as e:  # config_flags on a key the locked config does not have (or the file's own)
        bad = _unknown_override(argv)
        if bad is not None:
            sys.exit(f'error: unknown config key {bad!r}: check the spelling (--helpconfig lists the fields)')
        sys.exit(f'error: {given or "the config"}: AttributeError: {e}')
    except Exception as e:  # noqa: BLE001  (the config file itself failed: syntax, a name error, ...)
        where = f' line {e.lineno}' if isinstance(e, SyntaxError) else ''
        sys.exit(f'error: {given or "the config"}{where}: {type(e).__name__}: '
                 f'{e.msg if isinstance(e, SyntaxError) else e}')


def _unknown_override(argv: list) -> str | None:
    """The first --config.a.b key of argv that the --config file's config does not have."""
    file = _config_arg(argv)
    try:
        config = load_config(file) if file else None
    except Exception:  # noqa: BLE001  (the file itself is broken: reported as such)
        return None
    for a in argv:
        if config is not None and a.startswith('--config.'):
            key = a[len('--config.'):].split('=')[0]
            try:
                get_field(config, key)
            except UsageError:
                return key
    return None


def run(main) -> None:
    """absl's app.run(main) for a tool: config paths resolved, one-line errors for bad flags,
    and UsageError / FileNotFoundError / FileExistsError / WorkdirBusy, or any exception whose class
    sets `one_line = True` (data.pipeline.DataError, checkpoint.StorageError), raised by `main`
    printed as `error: ...` (exit status 1). --helpconfig prints the config and exits."""
    from absl import app, flags, logging
    if 'helpconfig' not in flags.FLAGS:
        flags.DEFINE_bool('helpconfig', False, 'print the config (every field) and exit')

    def wrapped(argv):
        if not any(a.startswith(('--verbosity', '-v=')) for a in sys.argv):
            logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; --verbosity=0 shows them
        if flags.FLAGS.helpconfig:
            print(flags.FLAGS.config if 'config' in flags.FLAGS else 'this tool takes no --config')
            return 0
        from vjepa_jax.workdir_lock import WorkdirBusy
        try:
            if len(argv) > 1:
                raise UsageError(f'unexpected arguments {argv[1:]}: flags are --name=value')
            return main(argv)
        except (UsageError, FileNotFoundError, FileExistsError, WorkdirBusy) as e:
            sys.exit(f'error: {e}')
        except Exception as e:
            if getattr(e, 'one_line', False):
                sys.exit(f'error: {e}')
            raise
    app.run(wrapped, argv=_resolve_config_argv(sys.argv), flags_parser=_parse_flags)
