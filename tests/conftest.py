"""Shared test fixtures: the repo on sys.path and the MNIST data directory."""

import os
import shutil
import sys

import jax
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# Test modules import helpers from here and from each other (`from conftest import mlp_task`).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# One persistent compilation cache for every test process (both xdist workers, and the test runs after them), set
# before anything compiles (JAX reads the setting once): a program that any test compiled loads from disk. JAX keys
# an entry by the program, its compile options and the library versions, so changed code compiles anew, and an
# entry it cannot read (one half-written by the other worker) is compiled again with a warning. Past 2 GiB (the
# entries of code since changed) the directory is emptied first. NETS_TEST_COMPILATION_CACHE names another one.
# JAX's own size limit is not used: it locks the directory and lists it on every write, which made the fast loop
# slower than no cache at all.
COMPILATION_CACHE = os.environ.get('NETS_TEST_COMPILATION_CACHE') or os.path.join(
    REPO, '.pytest_cache', 'jax-compilation-cache'
)
if os.path.isdir(COMPILATION_CACHE) and sum(e.stat().st_size for e in os.scandir(COMPILATION_CACHE)) > 2 << 30:
    shutil.rmtree(COMPILATION_CACHE, ignore_errors=True)
jax.config.update('jax_compilation_cache_dir', COMPILATION_CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
# The in-process tests compile with most of XLA's optimizations off: the same programs, less optimised, about 40%
# less time to compile, which is most of a test's time (tests/test_tasks.py and test_growth.py: 240 s -> 150 s). Every
# comparison in them runs both sides in this process, so both compile alike. launch.py in a subprocess (the CLI and
# kill-and-resume tests) compiles as users run it. NETS_TEST_OPTIMIZE=1 compiles the in-process tests that way too.
jax.config.update('jax_disable_most_optimizations', os.environ.get('NETS_TEST_OPTIMIZE') != '1')


def mnist_data_dir() -> str:
    """TFDS_DATA_DIR if set, else the ../shared/data/tensorflow_datasets that CI lays out beside the repo."""
    return os.environ.get('TFDS_DATA_DIR') or os.path.join(
        os.path.dirname(REPO), 'shared', 'data', 'tensorflow_datasets'
    )


@pytest.fixture(scope='session')
def data_dir() -> str:
    """The MNIST data directory; skips the test when MNIST is absent."""
    path = mnist_data_dir()
    if not os.path.isdir(os.path.join(path, 'mnist')):
        pytest.skip(f'MNIST not found in {path}; set TFDS_DATA_DIR')
    return path


def teacher_data(seed: int, num_train: int, num_validation: int):
    """A small learnable problem: labels from a fixed random linear teacher on Gaussian inputs, as train.Data."""
    from nets import train

    key_x, key_teacher = jax.random.split(jax.random.PRNGKey(seed))
    images = jax.random.normal(key_x, (num_train + num_validation, 784))
    labels = (images @ jax.random.normal(key_teacher, (784, 10))).argmax(-1).astype('int32')
    return train.Data(images[:num_train], labels[:num_train], images[num_train:], labels[num_train:])


def mlp_task(
    optimizer: str = 'adam',
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    *,
    loss: str | None = None,
    early_stopping: dict | None = None,
    penalties: tuple = (),
    transforms: tuple = (),
    after_update=None,
    model: str = 'mlp',
    **model_fields,
):
    """A Task (and its default hparams) from the task schema, as an experiment builds it, on 784 inputs."""
    from nets import tasks

    config = {
        'model': {'name': model, 'hidden_widths': (32,), **model_fields},
        'optimizer': {'name': optimizer, 'learning_rate': learning_rate, 'transforms': transforms},
        'penalties': penalties,
        'early_stopping': early_stopping or {},
        'batch_size': batch_size,
    }
    if loss is not None:
        config['loss'] = loss
    return tasks.build(config, (784,), after_update=after_update)


@pytest.hookimpl(optionalhook=True)  # without pytest-xdist (-p no:xdist) the hook does not exist
def pytest_xdist_make_scheduler(config, log):
    """Under --dist loadfile, each test of tests/test_kill.py is a unit of its own (growth's and pruning's
    kill-and-resume are the suite's two longest tests, and may run on the two workers at once); every other test runs
    on the worker of its file, so that a module's or an experiment's shared run is made once. (--dist loadgroup would
    say this with marks, but pytest-xdist 3.8 does not group under pytest 9.)"""
    if config.getvalue('dist') != 'loadfile':
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if nodeid.startswith('tests/test_kill.py::') else super()._split_scope(nodeid)

    return Scheduling(config, log)
