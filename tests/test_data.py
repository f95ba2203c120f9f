"""Tests of nets.data: the decoded-array cache, missing data, splits, few-label subsets and device arrays."""

import io
import logging
import os
import shutil
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest
import requests
import tensorflow_datasets as tfds

from conftest import mnist_data_dir
from nets import data

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSION = '3.0.1'
# Test-split files only: enough for tfds.data_source(split='test') and ten times smaller than the whole dataset.
TEST_SPLIT_FILES = ('dataset_info.json', 'features.json', 'mnist-test.array_record-00000-of-00001')
# Label counts of the canonical MNIST test set, digits 0 to 9.
MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# Where TFDS downloads MNIST from (tfds.image_classification.MNIST.URL).
MNIST_URL = 'https://storage.googleapis.com/cvdf-datasets/mnist/'


def _copy_test_split(destination: Path) -> Path:
    """A TFDS data directory at `destination` that holds the MNIST test split; returns its version directory."""
    source = Path(mnist_data_dir()) / 'mnist' / VERSION
    if not (source / TEST_SPLIT_FILES[-1]).is_file():
        pytest.skip(f'MNIST {VERSION} is not prepared in {source.parent.parent}; set TFDS_DATA_DIR.')
    version_dir = destination / 'mnist' / VERSION
    version_dir.mkdir(parents=True)
    for file_name in TEST_SPLIT_FILES:
        shutil.copyfile(source / file_name, version_dir / file_name)
    return version_dir


def _npz_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.suffix == '.npz')


def _fail_decoding(data_source):
    raise AssertionError('decoded although a valid cache exists')


@pytest.fixture(scope='module')
def read_only_copy(tmp_path_factory):
    """A copy of the MNIST test split whose version directory has no write bits, as ../shared has in CI."""
    root = tmp_path_factory.mktemp('read_only_tfds')
    version_dir = _copy_test_split(root)
    version_dir.chmod(0o555)
    yield root
    # Without the write bits back, a non-root user could not delete the temporary directory.
    version_dir.chmod(0o755)


@pytest.fixture(scope='module')
def test_split(read_only_copy, tmp_path_factory):
    """The real MNIST test split, decoded once for the module; the cache lands in a temporary cache_dir."""
    cache_dir = tmp_path_factory.mktemp('cache')
    images, labels = data.load_split_arrays(
        'mnist', 'test', data_dir=str(read_only_copy), cache_dir=str(cache_dir), download=False
    )
    return images, labels, cache_dir


# Real data: the test split and its cache.


def test_test_split_is_canonical_mnist(test_split):
    images, labels, _ = test_split
    assert images.shape == (10_000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.int32
    assert np.bincount(labels).tolist() == MNIST_TEST_LABEL_COUNTS
    assert images.min() == 0 and images.max() == 255


def test_read_only_data_dir_falls_back_to_cache_dir(read_only_copy, test_split):
    _, _, cache_dir = test_split
    assert _npz_files(cache_dir) == [f'mnist-{VERSION}-test.npz']
    assert _npz_files(read_only_copy / 'mnist' / VERSION) == []


def test_second_load_is_served_from_cache(read_only_copy, test_split, monkeypatch):
    images, labels, cache_dir = test_split
    monkeypatch.setattr(data, '_decode_split', _fail_decoding)
    cached_images, cached_labels = data.load_split_arrays(
        'mnist', 'test', data_dir=str(read_only_copy), cache_dir=str(cache_dir), download=False
    )
    assert np.array_equal(cached_images, images) and cached_images.dtype == np.uint8
    assert np.array_equal(cached_labels, labels) and cached_labels.dtype == np.int32


def test_cache_is_written_next_to_writable_data(tmp_path, test_split, monkeypatch):
    images, labels, _ = test_split
    version_dir = _copy_test_split(tmp_path / 'tfds')
    cache_dir = tmp_path / 'cache'
    # The module already decoded this split; reuse it so this test checks only where the cache goes.
    monkeypatch.setattr(data, '_decode_split', lambda data_source: (images, labels))
    data.load_split_arrays('mnist', 'test', data_dir=str(tmp_path / 'tfds'), cache_dir=str(cache_dir))
    assert _npz_files(version_dir) == [f'mnist-{VERSION}-test.npz']
    assert not cache_dir.exists()
    assert sorted(os.listdir(version_dir)) == sorted([*TEST_SPLIT_FILES, f'mnist-{VERSION}-test.npz'])

    # TFDS still reads a version directory that holds our cache file, and the cache is used.
    monkeypatch.setattr(data, '_decode_split', _fail_decoding)
    cached_images, cached_labels = data.load_split_arrays('mnist', 'test', data_dir=str(tmp_path / 'tfds'))
    assert np.array_equal(cached_images, images) and np.array_equal(cached_labels, labels)


@pytest.mark.reliability
@pytest.mark.parametrize('stale', ['fewer_examples', 'scalar_labels'])
def test_stale_cache_is_replaced(stale, read_only_copy, test_split, tmp_path, monkeypatch, caplog):
    images, labels = test_split[:2]
    if stale == 'fewer_examples':
        images, labels = np.zeros((3, 28, 28, 1), np.uint8), np.zeros(3, np.int32)
    else:
        labels = np.array(7, np.int32)
    cache_file = tmp_path / f'mnist-{VERSION}-test.npz'
    # A matching checksum, so that only the shapes make the cache stale.
    np.savez(cache_file, images=images, labels=labels, checksum=np.array(data._arrays_checksum(images, labels)))
    _assert_rebuilt(cache_file, 'is stale', read_only_copy, test_split, monkeypatch, caplog)


def _cache_warnings(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == data.__name__ and record.levelno >= logging.WARNING
    ]


def _assert_rebuilt(cache_file: Path, reason: str, read_only_copy, test_split, monkeypatch, caplog) -> None:
    """One load decodes, with one warning naming `cache_file` and `reason`; the rewritten cache serves the next load."""
    images, labels, _ = test_split
    decodings = []
    monkeypatch.setattr(data, '_decode_split', lambda data_source: decodings.append(1) or (images, labels))
    load = lambda: data.load_split_arrays(
        'mnist', 'test', data_dir=str(read_only_copy), cache_dir=str(cache_file.parent), download=False
    )
    with caplog.at_level(logging.WARNING, logger=data.__name__):
        loaded_images, loaded_labels = load()
    assert decodings == [1]
    assert np.array_equal(loaded_images, images) and np.array_equal(loaded_labels, labels)
    warnings = _cache_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert str(cache_file) in warnings[0] and reason in warnings[0] and 'rewriting' in warnings[0]
    assert '\n' not in warnings[0]

    caplog.clear()
    monkeypatch.setattr(data, '_decode_split', _fail_decoding)
    with caplog.at_level(logging.WARNING, logger=data.__name__):
        cached_images, cached_labels = load()
    assert np.array_equal(cached_images, images) and cached_images.dtype == np.uint8
    assert np.array_equal(cached_labels, labels) and cached_labels.dtype == np.int32
    assert _cache_warnings(caplog) == []


def _flip_bytes(raw: bytes, offset: int, count: int = 8) -> bytes:
    return raw[:offset] + bytes(byte ^ 0x5A for byte in raw[offset : offset + count]) + raw[offset + count :]


def _deflate_start(path: Path, member: str) -> int:
    """Offset of the compressed data of `member` in the zip file at `path`."""
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(member).header_offset
    header = path.read_bytes()[offset : offset + 30]
    # The local header's own name and extra lengths (bytes 26-29), which may differ from the central directory's.
    return offset + 30 + int.from_bytes(header[26:28], 'little') + int.from_bytes(header[28:30], 'little')


def _corrupt(kind: str, cache_file: Path, good: bytes, images: np.ndarray, labels: np.ndarray) -> type:
    """Writes a damaged cache of `kind` to `cache_file`; returns the exception np.load raises on it."""
    if kind == 'empty':
        cache_file.write_bytes(b'')
        return EOFError
    if kind == 'truncated':
        cache_file.write_bytes(good[: len(good) // 2])
        return zipfile.BadZipFile
    if kind == 'garbage':
        cache_file.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return ValueError
    if kind == 'flipped_in_zip':
        # The middle of the file lies inside images.npy, whose CRC-32 then fails.
        cache_file.write_bytes(_flip_bytes(good, len(good) // 2))
        return zipfile.BadZipFile
    assert kind == 'corrupt_deflate'
    np.savez_compressed(cache_file, images=images, labels=labels)
    cache_file.write_bytes(_flip_bytes(cache_file.read_bytes(), _deflate_start(cache_file, 'images.npy') + 2))
    return zlib.error


@pytest.mark.reliability
@pytest.mark.parametrize('kind', ['empty', 'truncated', 'garbage', 'flipped_in_zip', 'corrupt_deflate'])
def test_damaged_cache_is_rebuilt_with_one_warning(kind, read_only_copy, test_split, tmp_path, monkeypatch, caplog):
    images, labels, cache_dir = test_split
    cache_file = tmp_path / f'mnist-{VERSION}-test.npz'
    error = _corrupt(kind, cache_file, (cache_dir / cache_file.name).read_bytes(), images, labels)
    # The damage is real: reading the file the plain way fails with the kind of error that once escaped.
    with pytest.raises(error):
        with np.load(cache_file, allow_pickle=False) as cache:
            cache['images'], cache['labels']
    _assert_rebuilt(cache_file, 'unreadable', read_only_copy, test_split, monkeypatch, caplog)


@pytest.mark.reliability
def test_cache_whose_arrays_differ_from_its_checksum_is_rebuilt(
    read_only_copy, test_split, tmp_path, monkeypatch, caplog
):
    images, labels, cache_dir = test_split
    with np.load(cache_dir / f'mnist-{VERSION}-test.npz', allow_pickle=False) as cache:
        checksum = cache['checksum']
    changed = images.copy()
    changed[1234, 14, 14, 0] ^= 0xFF
    cache_file = tmp_path / f'mnist-{VERSION}-test.npz'
    # A consistent zip, so only the checksum can tell that one pixel differs from what was decoded.
    np.savez(cache_file, images=changed, labels=labels, checksum=checksum)
    _assert_rebuilt(cache_file, 'does not match its checksum', read_only_copy, test_split, monkeypatch, caplog)


@pytest.mark.reliability
def test_cache_without_checksum_is_rebuilt(read_only_copy, test_split, tmp_path, monkeypatch, caplog):
    images, labels, _ = test_split
    cache_file = tmp_path / f'mnist-{VERSION}-test.npz'
    # The layout that the cache had before checksums.
    np.savez(cache_file, images=images, labels=labels)
    _assert_rebuilt(cache_file, 'no checksum', read_only_copy, test_split, monkeypatch, caplog)


@pytest.mark.reliability
def test_doctored_cache_with_its_own_matching_checksum_is_rebuilt(
    read_only_copy, test_split, tmp_path, monkeypatch, caplog
):
    images, labels, _ = test_split
    changed = images.copy()
    changed[1234, 14, 14, 0] ^= 0xFF
    cache_file = tmp_path / f'mnist-{VERSION}-test.npz'
    # Consistent in itself: only the fingerprint of the prepared files it claims to come from can tell.
    checksum, sources = np.array(data._arrays_checksum(changed, labels)), np.array('0' * 64)
    np.savez(cache_file, images=changed, labels=labels, checksum=checksum, sources=sources)
    _assert_rebuilt(cache_file, 'other data files', read_only_copy, test_split, monkeypatch, caplog)


@pytest.mark.reliability
def test_a_cache_does_not_hide_a_prepared_file_that_changed(test_split, tmp_path, monkeypatch):
    images, labels, _ = test_split
    version_dir = _copy_test_split(tmp_path / 'tfds')
    monkeypatch.setattr(data, '_decode_split', lambda data_source: (images, labels))
    data.load_split_arrays('mnist', 'test', data_dir=str(tmp_path / 'tfds'), download=False)  # caches next to it
    monkeypatch.undo()
    record_file = version_dir / TEST_SPLIT_FILES[-1]
    record_file.write_bytes(record_file.read_bytes()[:2_000_000])  # cut short, as by a full disk or a lost copy
    with pytest.raises(data.DataError, match=r'cannot be decoded \(RuntimeError: .*prepare it again') as error:
        data.load_split_arrays('mnist', 'test', data_dir=str(tmp_path / 'tfds'), download=False)
    assert str(version_dir) in str(error.value) and '\n' not in str(error.value)


@pytest.mark.reliability
def test_a_data_dir_with_only_the_json_files_names_the_missing_record_file(tmp_path):
    version_dir = _copy_test_split(tmp_path / 'tfds')
    (version_dir / TEST_SPLIT_FILES[-1]).unlink()
    with pytest.raises(data.DataError, match='No such file') as error:
        data.load_split_arrays(
            'mnist', 'test', data_dir=str(tmp_path / 'tfds'), cache_dir=str(tmp_path), download=False
        )
    assert str(version_dir / TEST_SPLIT_FILES[-1]) in str(error.value) and '\n' not in str(error.value)


@pytest.mark.reliability
def test_failed_cache_write_leaves_no_partial_file(read_only_copy, test_split, tmp_path, monkeypatch):
    images, labels, _ = test_split

    def crash_halfway(file, **arrays):
        file.write(b'PK\x03\x04 half an archive')
        raise OSError('No space left on device')

    monkeypatch.setattr(data, '_decode_split', lambda data_source: (images, labels))
    monkeypatch.setattr(data.np, 'savez', crash_halfway)
    loaded_images, _ = data.load_split_arrays('mnist', 'test', data_dir=str(read_only_copy), cache_dir=str(tmp_path))
    # The run goes on with the decoded arrays; the next one decodes again instead of reading half a file.
    assert loaded_images is images
    assert os.listdir(tmp_path) == []


def test_no_tensorflow_is_imported(read_only_copy, tmp_path):
    # A fresh interpreter, so that no other test's imports count, and a fresh cache, so that it decodes.
    script = (
        'import sys; from nets import data; '
        f"images, _ = data.load_split_arrays('mnist', 'test', data_dir={str(read_only_copy)!r}, "
        f'cache_dir={str(tmp_path)!r}); '
        "assert len(images) == 10_000; assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    environment = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(REPO_ROOT), os.environ.get('PYTHONPATH', '')])}
    result = subprocess.run(
        [sys.executable, '-c', script], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert _npz_files(tmp_path) == [f'mnist-{VERSION}-test.npz']


# Missing data.


def _assert_one_line(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert '\n' not in message and message.strip() == message
    for part in parts:
        assert part in message


def test_nonexistent_data_dir_fails_without_asking_tfds(monkeypatch):
    # Recorded rather than raised: the loader turns any TFDS exception into a DataError, which would hide it.
    calls = []
    monkeypatch.setattr(tfds, 'data_source', lambda *args, **kwargs: calls.append(args))
    with pytest.raises(data.DataError) as error:
        data.load_split_arrays('mnist', 'test', data_dir='/nonexistent/dir')
    _assert_one_line(error, '/nonexistent/dir', '--data_dir', 'TFDS_DATA_DIR', 'mnist')
    assert calls == [], 'TFDS was asked to load (and maybe download) into a directory that does not exist'
    assert not os.path.exists('/nonexistent/dir')


def test_data_dir_without_the_dataset_fails_with_one_line(tmp_path):
    with pytest.raises(data.DataError) as error:
        data.load_split_arrays('mnist', 'test', data_dir=str(tmp_path), download=False)
    _assert_one_line(error, str(tmp_path), '--data_dir', 'mnist')
    assert list(tmp_path.iterdir()) == []


def test_failed_download_fails_with_one_line_naming_the_default_dir(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError('Failed to reach storage.googleapis.com\nName or service not known')

    monkeypatch.delenv('TFDS_DATA_DIR', raising=False)
    # The host answers, so that the failure comes from TFDS itself, whatever network this machine has.
    monkeypatch.setattr(data, '_probe_download_host', lambda name, data_dir: None)
    monkeypatch.setattr(tfds, 'data_source', offline)
    with pytest.raises(data.DataError) as error:
        data.load_split_arrays('mnist', 'train')
    _assert_one_line(error, str(tfds.core.constants.DATA_DIR), '--data_dir', 'mnist', 'ConnectionError')
    assert isinstance(error.value.__cause__, ConnectionError)


@pytest.fixture
def tfds_downloads(monkeypatch) -> list[dict]:
    """The calls that would let TFDS download, recorded instead of waiting minutes for its retries."""
    calls = []

    def record(*args, **kwargs):
        calls.append(kwargs)
        raise RuntimeError('TFDS was asked to download')

    monkeypatch.setattr(tfds, 'data_source', record)
    return calls


def _answer(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code, response.url, response.raw = status, MNIST_URL, io.BytesIO()
    return response


def test_empty_data_dir_without_network_fails_before_tfds_downloads(tmp_path, tfds_downloads):
    # The real network: none on the test machines. Where there is one, TFDS would rightly download.
    try:
        requests.head(MNIST_URL, timeout=2)
        pytest.skip(f'{MNIST_URL} is reachable from here')
    except requests.RequestException:
        pass
    with pytest.raises(data.DataError) as error:
        data.load_split_arrays('mnist', 'test', data_dir=str(tmp_path), download=True)
    _assert_one_line(
        error, str(tmp_path), '--data_dir', 'mnist', 'could not be downloaded', 'cannot reach storage.googleapis.com'
    )
    assert isinstance(error.value.__cause__, ConnectionError)
    assert tfds_downloads == [], 'TFDS was left to retry an unreachable host'


def test_unreachable_download_host_fails_before_tfds_downloads(tmp_path, tfds_downloads, monkeypatch):
    asked = []

    def unreachable(url, **kwargs):
        asked.append(url)
        raise requests.ConnectionError('Failed to resolve storage.googleapis.com')

    monkeypatch.setattr(requests, 'head', unreachable)
    with pytest.raises(data.DataError) as error:
        data.load_split_arrays('mnist', 'test', data_dir=str(tmp_path), download=True)
    _assert_one_line(error, str(tmp_path), '--data_dir', 'cannot reach storage.googleapis.com', 'Failed to resolve')
    assert asked == [MNIST_URL] and tfds_downloads == []


def test_download_host_that_never_answers_fails_after_the_probe_timeout(tmp_path, tfds_downloads, monkeypatch):
    release = threading.Event()
    # A name lookup or connection that hangs; released at the end so that the probe's thread ends too.
    monkeypatch.setattr(requests, 'head', lambda url, **kwargs: release.wait(10) and _answer(200))
    monkeypatch.setattr(data, 'DOWNLOAD_PROBE_TIMEOUT_S', 0.05)
    try:
        with pytest.raises(data.DataError) as error:
            data.load_split_arrays('mnist', 'test', data_dir=str(tmp_path), download=True)
    finally:
        release.set()
    _assert_one_line(error, str(tmp_path), '--data_dir', 'storage.googleapis.com did not answer within 0.05 s')
    assert tfds_downloads == []


@pytest.mark.parametrize('status', [200, 404])
def test_reachable_download_host_lets_tfds_download(status, tmp_path, tfds_downloads, monkeypatch):
    asked = []
    monkeypatch.setattr(requests, 'head', lambda url, **kwargs: asked.append(url) or _answer(status))
    # The DataError comes from the recorder that stands in for TFDS.
    with pytest.raises(data.DataError, match='TFDS was asked to download'):
        data.load_split_arrays('mnist', 'test', data_dir=str(tmp_path), download=True)
    assert asked == [MNIST_URL]
    assert tfds_downloads == [dict(split='test', data_dir=str(tmp_path), download=True)]


def test_prepared_data_with_download_on_asks_no_host(read_only_copy, test_split, monkeypatch):
    asked = []
    monkeypatch.setattr(requests, 'head', lambda url, **kwargs: asked.append(url) or _answer(200))
    images, _ = data.load_split_arrays(
        'mnist', 'test', data_dir=str(read_only_copy), cache_dir=str(test_split[2]), download=True
    )
    assert len(images) == 10_000
    assert asked == []


def test_resolve_data_dir_prefers_flag_then_environment(monkeypatch):
    monkeypatch.setenv('TFDS_DATA_DIR', '/from/environment')
    assert data.resolve_data_dir('/from/flag') == '/from/flag'
    assert data.resolve_data_dir(None) == '/from/environment'
    assert data.resolve_data_dir('') == '/from/environment'
    monkeypatch.delenv('TFDS_DATA_DIR')
    assert data.resolve_data_dir(None) is None


# Splits, on synthetic arrays whose pixels spell each example's id, so that no test here decodes.


def _synthetic_split(num_examples: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(offset, offset + num_examples)
    images = np.zeros((num_examples, 2, 2, 1), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = ids // 256, ids % 256
    return images, (ids % 10).astype(np.int32)


def _ids(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(np.int64) * 256 + images[:, 0, 1, 0]


@pytest.fixture
def synthetic_dataset(monkeypatch):
    splits = {'train': _synthetic_split(1_000, 0), 'test': _synthetic_split(300, 10_000)}
    monkeypatch.setattr(data, 'load_split_arrays', lambda name, split, *args, **kwargs: splits[split])


def test_validation_is_held_out_from_train(synthetic_dataset):
    splits = data.load_splits(validation_size=200, split_seed=3)
    train_ids, validation_ids = _ids(splits.train_images), _ids(splits.validation_images)
    assert len(train_ids) == 800 and len(validation_ids) == 200
    assert np.intersect1d(train_ids, validation_ids).size == 0
    assert np.array_equal(np.sort(np.concatenate([train_ids, validation_ids])), np.arange(1_000))
    assert np.array_equal(splits.train_labels, train_ids % 10)
    assert np.array_equal(splits.validation_labels, validation_ids % 10)
    assert np.array_equal(_ids(splits.test_images), np.arange(10_000, 10_300))
    assert splits.num_classes == 10


def test_validation_split_is_fixed_by_seed(synthetic_dataset):
    first = data.load_splits(validation_size=200, split_seed=3)
    again = data.load_splits(validation_size=200, split_seed=3)
    other = data.load_splits(validation_size=200, split_seed=4)
    assert np.array_equal(_ids(first.validation_images), _ids(again.validation_images))
    assert not np.array_equal(_ids(first.validation_images), _ids(other.validation_images))
    # The held-out examples are the last ones of the seeded permutation.
    expected = np.sort(np.random.default_rng(3).permutation(1_000)[-200:])
    assert np.array_equal(_ids(first.validation_images), expected)


def test_zero_validation_size_trains_on_all_of_train(synthetic_dataset):
    splits = data.load_splits(validation_size=0)
    assert np.array_equal(_ids(splits.train_images), np.arange(1_000))
    assert splits.validation_images.shape == (0, 2, 2, 1) and splits.validation_labels.shape == (0,)


def test_limits_take_the_first_examples(synthetic_dataset):
    full = data.load_splits(validation_size=100)
    limited = data.load_splits(validation_size=100, train_limit=50, test_limit=20)
    assert np.array_equal(limited.train_images, full.train_images[:50])
    assert np.array_equal(limited.test_labels, full.test_labels[:20])
    assert np.array_equal(limited.validation_images, full.validation_images)


@pytest.mark.parametrize(
    'arguments',
    [
        dict(validation_size=-1),
        dict(validation_size=1_000),
        dict(validation_size=5_000),
        dict(train_limit=0),
        dict(test_limit=-3),
    ],
)
def test_bad_split_arguments_raise(synthetic_dataset, arguments):
    with pytest.raises(ValueError) as error:
        data.load_splits(**arguments)
    assert '\n' not in str(error.value)


# Few-label subsets.


def test_few_label_subset_is_balanced_sorted_and_seeded():
    labels = np.random.default_rng(0).integers(0, 10, size=2_000)
    subset = data.few_label_subset(labels, per_class=7, seed=1)
    assert np.bincount(labels[subset], minlength=10).tolist() == [7] * 10
    assert len(np.unique(subset)) == len(subset) == 70
    assert np.array_equal(subset, np.sort(subset))
    assert np.array_equal(subset, data.few_label_subset(labels, per_class=7, seed=1))
    assert not np.array_equal(subset, data.few_label_subset(labels, per_class=7, seed=2))


def test_few_label_subset_on_real_labels(test_split):
    _, labels, _ = test_split
    subset = data.few_label_subset(labels, per_class=10, seed=0)
    assert np.bincount(labels[subset], minlength=10).tolist() == [10] * 10


def test_few_label_subset_rejects_too_many_per_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    assert len(data.few_label_subset(labels, per_class=2, seed=0)) == 6
    with pytest.raises(ValueError) as error:
        data.few_label_subset(labels, per_class=3, seed=0)
    assert '\n' not in str(error.value) and '[1]' in str(error.value)


# Device arrays.


def test_to_device_normalizes_and_flattens():
    images = np.random.default_rng(0).integers(0, 256, size=(6, 28, 28, 1), dtype=np.uint8)
    images[0, 0, 0, 0], images[0, 0, 1, 0] = 0, 255
    labels = np.arange(6, dtype=np.int64)
    device_images, device_labels = data.to_device(images, labels)
    assert isinstance(device_images, jax.Array) and isinstance(device_labels, jax.Array)
    assert device_images.shape == (6, 784) and device_images.dtype == np.float32
    assert device_labels.dtype == np.int32 and np.array_equal(device_labels, labels)
    host = np.asarray(device_images)
    assert host.min() == 0.0 and host.max() == 1.0
    assert np.array_equal(host, images.reshape(6, 784).astype(np.float32) / 255)
    # The same input gives the same bits every time.
    assert np.array_equal(np.asarray(data.to_device(images, labels)[0]).view(np.uint32), host.view(np.uint32))


def test_to_device_handles_an_empty_split_and_a_sharding():
    empty_images, empty_labels = data.to_device(np.zeros((0, 28, 28, 1), np.uint8), np.zeros(0, np.int32))
    assert empty_images.shape == (0, 784) and empty_labels.shape == (0,)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    device_images, _ = data.to_device(np.ones((2, 28, 28, 1), np.uint8), np.zeros(2, np.int32), sharding)
    assert device_images.sharding == sharding
