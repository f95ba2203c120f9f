"""Shared test fixtures: the repo on sys.path and the MNIST data directory."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


@pytest.fixture(scope='session')
def data_dir() -> str:
    """TFDS_DATA_DIR if set, else the ../shared/data/tensorflow_datasets beside the repo; skips when absent."""
    path = os.environ.get('TFDS_DATA_DIR') or os.path.join(os.path.dirname(REPO), 'shared', 'data',
                                                           'tensorflow_datasets')
    if not os.path.isdir(os.path.join(path, 'mnist')):
        pytest.skip(f'MNIST not found in {path}; set TFDS_DATA_DIR')
    return path
