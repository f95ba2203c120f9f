"""The one entry point: `python launch.py --config=experiments/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE]`.

With no flags it runs the baseline into a fresh folder under runs/ and prints where the report is.
"""

from __future__ import annotations

import errno
import fcntl
import importlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any


def _stopped_while_starting(signal_number, frame):
    """SIGINT or SIGTERM while the run starts (imports, flags, the config), before main() installs the handler that
    stops at an epoch end: nothing has been written yet, so one line and 128 + the signal's number at once."""
    name = signal.Signals(signal_number).name
    print(f'launch.py: stopped by {name} while starting; nothing was saved: run it again', file=sys.stderr)
    os._exit(128 + signal_number)


for _number in (signal.SIGINT, signal.SIGTERM):  # before the imports below, which take seconds
    signal.signal(_number, _stopped_while_starting)

import jax  # noqa: E402
import ml_collections  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from nets import data as data_lib, experiment, parallel, report, results, runner, validation  # noqa: E402

REPO = os.path.dirname(os.path.abspath(__file__))

config_flags.DEFINE_config_file(
    'config',
    os.path.join(REPO, 'experiments', 'baseline.py'),
    'Experiment config: experiments/NAME.py, optionally with :ARG (e.g. :quick).',
    lock_config=True,
)
flags.DEFINE_string('workdir', None, 'Output folder; default runs/NAME-TIMESTAMP.')
flags.DEFINE_string('data_dir', None, 'TFDS data directory; default $TFDS_DATA_DIR, else the TFDS default.')
flags.DEFINE_string('cache_dir', None, 'Where decoded arrays are cached when the data directory is read-only.')
flags.DEFINE_bool('resume', False, 'Continue the run in --workdir from its newest checkpoint.')
flags.DEFINE_string(
    'compilation_cache_dir',
    os.path.expanduser('~/.cache/nets/jax_compilation_cache'),
    'JAX persistent compilation cache, so that re-runs skip compilation; empty to disable.',
)
flags.DEFINE_string('coordinator_address', None, 'Multi-host: host:port of process 0 (jax.distributed).')
flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-host: index of this process.')
FLAGS = flags.FLAGS

RECORDED_CONFIG = 'config.json'  # the config a workdir's run was started with; --resume must match it
LOCK_FILE = '.lock'
# Written when a run starts: the workdir is this project's, so a later run may write into it. A run refuses a
# non-empty directory without it (one made before the marker is known by its results.json or saved checkpoints).
MARKER = '.nets-workdir'
# Fields that --resume may change, and how: they do not alter the numbers of the epochs already trained.
RESUMABLE_CHANGES = {
    'epochs': ('may only grow', lambda old, new: isinstance(new, int) and isinstance(old, int) and new >= old),
    'checkpoint_every': ('may change', lambda old, new: True),
}


class Refused(Exception):
    """A request launch.py refuses before it trains (one line, exit code 1)."""


def experiment_module(config_path: str):
    """The experiment module that a --config path names (experiments/NAME.py or any file with run())."""
    path = os.path.abspath(config_path.split(':', 1)[0])
    if os.path.dirname(path) == os.path.join(REPO, 'experiments'):
        return importlib.import_module(f'experiments.{os.path.splitext(os.path.basename(path))[0]}')
    spec = importlib.util.spec_from_file_location('experiment', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_workdir(config_path: str) -> str:
    name, _, arg = os.path.basename(config_path).partition(':')
    stem = os.path.splitext(name)[0] + (f'-{arg}' if arg else '')
    return os.path.join(REPO, 'runs', f'{stem}-{time.strftime("%Y%m%d-%H%M%S")}')


def saved_checkpoints(workdir: str) -> list[str]:
    """The checkpoint steps saved in a workdir ('VARIANT/EPOCH'); an empty checkpoints/ folder holds none."""
    root = os.path.join(workdir, 'checkpoints')
    if not os.path.isdir(root):
        return []
    return [
        f'{variant}/{step}'
        for variant in sorted(os.listdir(root))
        if os.path.isdir(os.path.join(root, variant))
        for step in sorted(os.listdir(os.path.join(root, variant)))
        if step.isdigit()
    ]


def check_workdir(workdir: str, resume: bool) -> None:
    """Refuses to overwrite a workdir that already holds results or a checkpoint, unless resuming."""
    existing = [name for name in ('results.json',) if os.path.exists(os.path.join(workdir, name))]
    existing += ['checkpoints'] if saved_checkpoints(workdir) else []
    if existing and not resume:
        raise Refused(
            f'--workdir={workdir} already holds {", ".join(existing)}; '
            'pass --resume to continue it or choose another --workdir'
        )


def foreign_entries(workdir: str) -> list[str]:
    """What a workdir holds when no run of this project made it: not new, not empty (but for lock files), and with
    no marker, results.json or saved checkpoint. A run refuses such a directory without touching it."""
    if not os.path.isdir(workdir):
        return []
    names = sorted(name for name in os.listdir(workdir) if not name.startswith(LOCK_FILE))
    if not names or MARKER in names or 'results.json' in names or saved_checkpoints(workdir):
        return []
    return names


def lock_workdir(workdir: str, process_id: int | None = None):
    """An exclusive lock on the workdir, held until this process exits; a second run into it is refused at once.
    The hosts of one multi-host run share the workdir, so each takes the lock of its own process index."""
    name = LOCK_FILE if not process_id else f'{LOCK_FILE}.{process_id}'
    handle = open(os.path.join(workdir, name), 'a+')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise Refused(
            f'--workdir={workdir} is in use by another run (it holds {LOCK_FILE}); wait for it or choose '
            'another --workdir'
        ) from None
    return handle


def _flat(config: Any, prefix: str = '') -> dict[str, Any]:
    if isinstance(config, dict):
        return {k: v for key, value in config.items() for k, v in _flat(value, f'{prefix}{key}.').items()}
    if isinstance(config, (list, tuple)):
        return {prefix[:-1]: json.loads(json.dumps(config))}
    return {prefix[:-1]: config}


def check_resume(workdir: str, config: dict) -> None:
    """Refuses a --resume whose config differs from the one the workdir's run started with, in any field that
    changes the numbers (RESUMABLE_CHANGES may differ), naming the first such field."""
    path = os.path.join(workdir, RECORDED_CONFIG)
    if not os.path.exists(path):
        raise Refused(
            f'--resume: {workdir} has no {RECORDED_CONFIG}, so what it ran cannot be checked; start it '
            'again in a fresh --workdir'
        )
    try:
        with open(path) as file:
            recorded = _flat(json.load(file))
    except ValueError as error:
        raise Refused(
            f'--resume: {path} is not the JSON a run writes ({error}), so what it ran cannot be checked; start it '
            'again in a fresh --workdir'
        ) from None
    requested = _flat(json.loads(json.dumps(config)))
    for key in sorted(set(recorded) | set(requested)):
        old, new = recorded.get(key, '<absent>'), requested.get(key, '<absent>')
        changeable = RESUMABLE_CHANGES.get(key)
        if old == new or (changeable and changeable[1](old, new)):
            continue
        allowed = f' (it {changeable[0]})' if changeable else ''
        raise Refused(
            f'--resume: --config.{key}={new!r} differs from the {old!r} this workdir ran with{allowed}; '
            'resume with the same config or start a fresh --workdir'
        )


def remove_traces(workdir: str, before: set[str] | None, own_checkpoints: bool = False) -> None:
    """After a run failed: removes exactly what it made (the workdir itself when `before`, the names it held at the
    start, is None; else the names that were not there), so that a plain re-run may start. Checkpoints stay for
    --resume unless `own_checkpoints` (a fresh run refused for its config: resuming it would be refused too)."""
    if os.path.exists(os.path.join(workdir, 'results.json')) or (saved_checkpoints(workdir) and not own_checkpoints):
        return
    if before is None:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    for name in sorted(set(os.listdir(workdir)) - before):
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


def enable_compilation_cache(directory: str) -> None:
    """Persists compiled programs so that a re-run of the same config skips XLA compilation; an unusable directory
    costs a warning line and the cache, not the run."""
    try:
        os.makedirs(directory, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=directory)
        probe.close()
    except OSError as error:
        print(
            f'launch.py: warning: --compilation_cache_dir={directory} is not writable ({error.strerror}); '
            'compiling without the cache',
            file=sys.stderr,
        )
        return
    jax.config.update('jax_compilation_cache_dir', directory)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def fail(message: str, code: int = 1) -> None:
    print(f'launch.py: error: {message}', file=sys.stderr)
    sys.exit(code)


def stop_at_epoch_ends() -> None:
    """SIGINT (Ctrl-C) and SIGTERM ask the run to stop at the end of the epoch that trains, after its checkpoint
    (runner.Interrupted); a second one stops at once (KeyboardInterrupt, wherever it lands)."""

    def handler(signal_number, frame):
        if runner.stop_requested() is not None:
            raise KeyboardInterrupt
        runner.request_stop(signal_number)

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, handler)


def exit_interrupted(workdir: str) -> None:
    """One line, then exit with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM) at once: exit handlers
    are skipped, since one of a writer cut short by the signal could wait forever, with the workdir's lock held. The
    checkpoints and the files were written before; closing this process releases the lock."""
    number = runner.stop_requested() or signal.SIGINT
    kept = saved_checkpoints(workdir)
    then = '--resume continues it from its newest checkpoint' if kept else 'nothing was saved yet: run it again'
    print(f'launch.py: stopped by {signal.Signals(number).name}; {then} ({workdir})', file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + number)


def main(argv):
    del argv  # parse_flags refused any argument that is not a flag
    if not FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    config_path = config_flags.get_config_filename(FLAGS['config'])
    workdir = os.path.abspath(FLAGS.workdir or default_workdir(config_path))
    config = FLAGS.config.to_dict()
    before = set(os.listdir(workdir)) if os.path.isdir(workdir) else None  # None: this run creates the workdir
    foreign = foreign_entries(workdir)
    if foreign:
        shown = ', '.join(foreign[:3]) + (f' and {len(foreign) - 3} more' if len(foreign) > 3 else '')
        fail(f'--workdir={workdir} holds files that no run of this project made ({shown}); choose a new or empty one')
    try:
        os.makedirs(workdir, exist_ok=True)
        lock = lock_workdir(workdir, FLAGS.process_id)  # noqa: F841 (held until exit)
    except OSError as error:
        fail(f'--workdir={workdir} cannot be used: {error.strerror or error}')
    except Refused as error:
        fail(str(error))
    started = time.perf_counter()
    stop_at_epoch_ends()
    primary = not FLAGS.process_id
    fresh = False  # the workdir holds no earlier run's checkpoints: what is there now, this run made
    try:
        # First of all JAX calls (the checks below build the task abstractly, which starts the backend).
        parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
        check_workdir(workdir, FLAGS.resume)
        if primary:
            results.write_json(
                os.path.join(workdir, MARKER), {'project': 'nets', 'note': 'a run of launch.py uses this'}
            )
        fresh = not FLAGS.resume
        module = experiment_module(config_path)
        validation.check(
            FLAGS.config, getattr(module, 'CONFIG_RULES', None), checks=getattr(module, 'CONFIG_CHECKS', ())
        )
        if FLAGS.resume:
            check_resume(workdir, config)
        results.write_json(os.path.join(workdir, RECORDED_CONFIG), config)
        if FLAGS.compilation_cache_dir:
            enable_compilation_cache(FLAGS.compilation_cache_dir)
        summary = experiment.run(
            module,
            FLAGS.config,
            workdir,
            data_dir=data_lib.resolve_data_dir(FLAGS.data_dir),
            cache_dir=FLAGS.cache_dir,
            resume=FLAGS.resume,
        )
    except (Refused, ValueError, FileExistsError, data_lib.DataError) as error:
        if primary:  # the other hosts of a multi-host run leave the shared workdir to process 0
            remove_traces(workdir, before, own_checkpoints=fresh)
        fail(str(error))
    except OSError as error:
        where = error.filename or workdir
        if error.errno == errno.ENOSPC and not error.filename:  # a write deep in a library: say where, and how full
            where = f'{workdir} ({shutil.disk_usage(workdir).free / 2**20:.1f} MiB free on its disk)'
        if primary:  # the other hosts of a multi-host run leave the shared workdir to process 0
            remove_traces(workdir, before)
        fail(f'{error.strerror or type(error).__name__}: {where}')
    except (runner.Interrupted, KeyboardInterrupt):
        if primary:  # an interrupted run keeps its checkpoints for --resume, and so what they need
            remove_traces(workdir, before)
        exit_interrupted(workdir)
    except BaseException:
        if primary:  # the other hosts of a multi-host run leave the shared workdir to process 0
            remove_traces(workdir, before)
        raise
    report.log(json.dumps(summary))
    report.log(f'finished in {time.perf_counter() - started:.1f}s; report: {os.path.join(workdir, "report.md")}')
    diverged = read_diverged(workdir)
    if diverged and not config.get('allow_divergence', False):
        members = ', '.join(f'{member} in epoch {epoch}' for member, epoch in diverged.items())
        fail(f'training diverged (non-finite loss): {members}; results so far are in {workdir}', code=3)


def read_diverged(workdir: str) -> dict[str, int]:
    """The members that results.json marks as diverged."""
    path = os.path.join(workdir, 'results.json')
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        return json.load(file).get('diverged', {})


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad flag (a missing config file, an unknown --config key, a value of the wrong
    type) reported in one line instead of a traceback or the whole usage text."""
    try:
        remaining = FLAGS(argv)
        config = FLAGS.config
        getattr(config, 'keys', None)  # config_flags reports a config file that failed to load only when it is read
    except Exception as error:  # config_flags raises many kinds while it loads the file and applies overrides
        text = str(error).strip()
        message = text.splitlines()[0] if text else type(error).__name__
        if message.endswith(':') and len(text.splitlines()) > 1:  # the reason is on the last line
            message = f'{message} {text.splitlines()[-1].strip()}'
        if 'Failed loading config file' in text:  # its last line says why: no such file, a syntax error
            message = f'--config cannot be loaded: {text.splitlines()[-1].strip()}'
        elif isinstance(error, AttributeError):  # an override of a field the config does not have
            message = f"unknown --config key {message.strip(chr(34) + chr(39))!r}; see the experiment's get_config"
        fail(message, code=2)
    if not isinstance(config, ml_collections.ConfigDict):
        path, kind = config_flags.get_config_filename(FLAGS['config']), type(config).__name__
        fail(f'--config={path}: get_config returned {config!r} ({kind}), not an ml_collections.ConfigDict', 2)
    if len(remaining) > 1:
        fail(
            f'unexpected arguments: {" ".join(remaining[1:])}; launch.py takes only flags (--config=..., ...)',
            2,
        )
    return remaining


if __name__ == '__main__':
    app.run(main, flags_parser=parse_flags)
