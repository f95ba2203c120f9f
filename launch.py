"""The one entry point: `python launch.py --config=experiments/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE]`.

With no flags it runs the baseline into a fresh folder under runs/ and prints where the report is.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from nets import data as data_lib, parallel, report

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

RESULT_FILES = ('results.json', 'checkpoints')


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


def check_workdir(workdir: str, resume: bool) -> None:
    """Refuses to overwrite a workdir that already holds results, unless resuming."""
    existing = [name for name in RESULT_FILES if os.path.exists(os.path.join(workdir, name))]
    if existing and not resume:
        raise FileExistsError(
            f'--workdir={workdir} already holds {", ".join(existing)}; '
            'pass --resume to continue it or choose another --workdir'
        )


def enable_compilation_cache(directory: str) -> None:
    """Persists compiled programs so that a re-run of the same config skips XLA compilation."""
    os.makedirs(directory, exist_ok=True)
    jax.config.update('jax_compilation_cache_dir', directory)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    if not FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    config_path = config_flags.get_config_filename(FLAGS['config'])
    workdir = os.path.abspath(FLAGS.workdir or default_workdir(config_path))
    try:
        check_workdir(workdir, FLAGS.resume)
        parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
        if FLAGS.compilation_cache_dir:
            enable_compilation_cache(FLAGS.compilation_cache_dir)
        module = experiment_module(config_path)
        os.makedirs(workdir, exist_ok=True)
        started = time.perf_counter()
        summary = module.run(
            FLAGS.config,
            workdir,
            data_dir=data_lib.resolve_data_dir(FLAGS.data_dir),
            cache_dir=FLAGS.cache_dir,
            resume=FLAGS.resume,
        )
    except (ValueError, FileExistsError, data_lib.DataError) as error:
        print(f'launch.py: error: {error}', file=sys.stderr)
        sys.exit(1)
    report.log(json.dumps(summary))
    report.log(f'finished in {time.perf_counter() - started:.1f}s; report: {os.path.join(workdir, "report.md")}')


if __name__ == '__main__':
    app.run(main)
