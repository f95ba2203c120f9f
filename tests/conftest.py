"""Shared test fixtures: the repo on sys.path and the MNIST data directory."""

import os
import sys

import jax
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# Test modules import helpers from here and from each other (`from conftest import mlp_task`).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


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
