"""TFDS data_source -> cached uint8 arrays -> normalized device arrays; splits; few-label subsets.

A split is decoded once with `tfds.data_source` (random access, no TensorFlow) and cached as an uncompressed
`.npz` with a sha256 of its arrays and one of the prepared files it was decoded from, next to the prepared data, or
in a cache directory when the data directory is read-only; a cache that cannot be read, fails its checksum or was
decoded from other files is rebuilt. A download first asks the dataset's host
once, so that a machine without network gets its error in seconds rather than after TFDS's minutes of retries.
"""

import dataclasses
import hashlib
import logging
import os
import re
import threading
import urllib.parse

import jax
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from nets.registry import lookup
from nets.results import written_atomically

DEFAULT_CACHE_DIR = os.path.join('~', '.cache', 'nets', 'tfds')
_DATA_DIR_HINT = 'Pass --data_dir=<a TFDS data directory> or set TFDS_DATA_DIR.'
# Seconds that the download probe waits for the dataset's host: a reachable one answers within a second; the margin is
# for slow links, where a false alarm would stop a download that works. Only a silent (firewalled) network waits it out.
DOWNLOAD_PROBE_TIMEOUT_S = 5.0

_logger = logging.getLogger(__name__)


# name -> the shape of one image; the task is checked against it before any data loads.
DATASETS: dict[str, tuple[int, ...]] = {'mnist': (28, 28, 1), 'fashion_mnist': (28, 28, 1)}
TRAIN_EXAMPLES: dict[str, int] = {'mnist': 60_000, 'fashion_mnist': 60_000}  # the size of each 'train' split
CLASSES: dict[str, int] = {'mnist': 10, 'fashion_mnist': 10}


def image_shape(name: str) -> tuple[int, ...]:
    """The shape of one image of dataset `name` (ValueError for a dataset this codebase does not know)."""
    return lookup(DATASETS, name, 'dataset')


class DataError(Exception):
    """Dataset missing or unusable; its message is one line meant for the user."""


def resolve_data_dir(data_dir: str | None) -> str | None:
    """--data_dir if given, else $TFDS_DATA_DIR, else None (TFDS default)."""
    # An empty string counts as absent: that is what an unset string flag holds.
    chosen = data_dir or os.environ.get('TFDS_DATA_DIR') or None
    return os.path.expanduser(chosen) if chosen else None


def _one_line(text: str, limit: int = 200) -> str:
    # TFDS errors span several lines; the user gets one, so collapse and shorten the reason.
    words = ' '.join(str(text).split())
    return words if len(words) <= limit else words[: limit - 3] + '...'


def _is_remote(path: str) -> bool:
    # TFDS also reads gs:// and similar; those cannot be checked or written with os.
    return '://' in path


def _is_writable_directory(path: str) -> bool:
    """Whether a cache file may be written into `path`."""
    if _is_remote(path) or not os.path.isdir(path):
        return False
    # Root passes os.access on any local directory, so also honour the write bits: a tree laid out without
    # them (like ../shared in CI) is meant to stay read-only.
    return os.access(path, os.W_OK) and bool(os.stat(path).st_mode & 0o222)


def _cache_file_name(name: str, version: str, split: str) -> str:
    # Splits like 'train[:10%]' hold characters that do not belong in file names; the hash keeps two such
    # splits apart after the characters are replaced.
    safe = re.sub(r'[^A-Za-z0-9._-]+', '_', f'{name}-{version}-{split}')
    if safe != f'{name}-{version}-{split}':
        safe += '-' + hashlib.sha1(f'{name}/{split}'.encode()).hexdigest()[:8]
    return safe + '.npz'


def _error_name(error: BaseException) -> str:
    # 'zlib.error' says more than 'error'; builtins keep their bare names.
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == 'builtins' else f'{kind.__module__}.{kind.__qualname__}'


def _warn_rebuild(path: str, reason: str) -> None:
    # One line per bad cache: the user learns why this load is slow, and that the next one will not be.
    _logger.warning('Cache %s %s; decoding the split again and rewriting the cache.', path, reason)


def _arrays_checksum(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 hex digest of the two arrays' dtypes, shapes and bytes."""
    # Measured for MNIST train (47 MB) on a 2-core AMD EPYC: 26-42 ms (hashlib uses the CPU's SHA extensions), next to
    # 30-130 ms for np.load of the same file; a CPU without those extensions needs roughly 0.1 s. Hashing the buffers
    # directly saves the copies that tobytes() would make.
    digest = hashlib.sha256()
    for array in (images, labels):
        array = np.ascontiguousarray(array)
        digest.update(f'{array.dtype.str}{array.shape};'.encode())
        digest.update(array.data)
    return digest.hexdigest()


def _sources_fingerprint(data_source, split: str) -> str:
    """sha256 hex digest of the names and bytes of the prepared files that `split` is read from, or DataError naming
    the file that cannot be read. A cache records it, so that data prepared again (or damaged) since the cache was
    made, even to the same length, rebuilds the cache instead of being hidden by it. (MNIST's train file, 23 MB, takes
    tens of milliseconds.)"""
    info = data_source.dataset_info
    names = {name for part in split.split('+') for name in info.splits[part.split('[')[0].strip()].filenames}
    digest = hashlib.sha256()
    for name in sorted(names):
        path = epath.Path(info.data_dir) / name
        try:
            digest.update(f'{name};'.encode() + path.read_bytes())
        except OSError as error:
            raise DataError(
                f'The prepared file {path} of split {split!r} cannot be read ({error.strerror or _one_line(error)});'
                f' prepare the dataset again. {_DATA_DIR_HINT}'
            ) from None
    return digest.hexdigest()


def _read_cache(path: str, num_examples: int, sources: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The arrays cached at `path`; None if absent, or with one warning if unreadable, stale, failing its checksum or
    decoded from other files than `sources` (their fingerprint) names."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            images, labels = cache['images'], cache['labels']
            stored_checksum = str(cache['checksum']) if 'checksum' in cache.files else None
            stored_sources = str(cache['sources']) if 'sources' in cache.files else None
    # A damaged file fails in many ways (BadZipFile, EOFError, zlib.error, ValueError, OSError, ...); a cache that
    # cannot be read is rebuilt whatever the reason, so no exception of it may stop the load.
    except Exception as error:
        _warn_rebuild(path, f'is unreadable ({_error_name(error)}: {_one_line(error)})')
        return None
    # A length that differs from the data source means the data were prepared again since the cache was made.
    if (
        images.dtype != np.uint8
        or labels.dtype != np.int32
        or images.ndim != 4
        or len(images) != num_examples
        # A shape, not a length: a 0-d array has none, and it must not raise here.
        or labels.shape != (num_examples,)
    ):
        found = f'images {images.shape} {images.dtype}, labels {labels.shape} {labels.dtype}'
        _warn_rebuild(path, f'is stale ({found}; the data have {num_examples} examples)')
        return None
    # zip's CRC-32 already catches bytes damaged inside the file; the checksum also catches arrays that were rewritten
    # whole by something other than _write_cache, and caches from before checksums, which count as stale.
    if stored_checksum is None:
        _warn_rebuild(path, 'has no checksum (written by an older version)')
        return None
    if stored_checksum != _arrays_checksum(images, labels):
        _warn_rebuild(path, 'does not match its checksum')
        return None
    if stored_sources != sources:
        _warn_rebuild(path, 'was decoded from other data files than those now prepared (or records none)')
        return None
    return images, labels


def _write_cache(path: str, images: np.ndarray, labels: np.ndarray, sources: str) -> None:
    """Writes the arrays and their files' fingerprint to `path` atomically: readers see the old file or the whole
    new one, never a part."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with written_atomically(path, 'wb') as file:
        # Stored as 0-d string arrays so that reading them needs no pickle.
        checksum, sources = np.array(_arrays_checksum(images, labels)), np.array(sources)
        np.savez(file, images=images, labels=labels, checksum=checksum, sources=sources)
        file.flush()
        os.fsync(file.fileno())


def _decode_split(data_source) -> tuple[np.ndarray, np.ndarray]:
    """All records of a TFDS data source, decoded and stacked into uint8 images [N, H, W, C] and int32 labels."""
    image_key, label_key = data_source.dataset_info.supervised_keys or ('image', 'label')
    # One batched read lets TFDS decode with its fastest path instead of one Python call per record.
    records = data_source.__getitems__(range(len(data_source)))
    images = np.stack([np.asarray(record[image_key], dtype=np.uint8) for record in records])
    if images.ndim == 3:
        images = images[..., np.newaxis]
    labels = np.asarray([record[label_key] for record in records], dtype=np.int32)
    return images, labels


def _probe_download_host(name: str, data_dir: str | None) -> None:
    """Raises ConnectionError within DOWNLOAD_PROBE_TIMEOUT_S if TFDS would download `name` but gets no answer."""
    # Without this an unreachable host costs about 206 s before TFDS gives up: it fetches each file through urllib3's
    # Retry(total=10, backoff_factor=0.2) (tensorflow_datasets/core/download/downloader.py, MAX_RETRIES), which sleeps
    # 0.4, 0.8, ... 102.4 s between tries even when the host name does not resolve at all.
    builder = tfds.builder(name, data_dir=data_dir)
    url = getattr(builder, 'URL', None)
    # TFDS downloads only when the version directory is absent; a builder without a single http(s) URL (none in
    # DATASETS) is left to TFDS.
    if builder.data_path.exists() or not isinstance(url, str) or not url.startswith(('http://', 'https://')):
        return
    # Imported here because only a download needs it (a TFDS dependency, ~0.1 s to import). TFDS downloads with
    # requests too, so the probe goes through the same proxies (*_proxy, no_proxy) and certificates.
    import requests

    timeout = DOWNLOAD_PROBE_TIMEOUT_S
    failures = []

    def ask() -> None:
        try:
            # Any HTTP answer, even 404 for the folder URL, shows that the files can be asked for.
            requests.head(url, timeout=timeout, allow_redirects=False).close()
        except Exception as error:
            failures.append(error)

    # requests' timeout does not cover the name lookup, which can hang on a broken resolver; waiting for a daemon
    # thread bounds both.
    thread = threading.Thread(target=ask, name='download-probe', daemon=True)
    thread.start()
    thread.join(timeout)
    host = urllib.parse.urlsplit(url).netloc
    if thread.is_alive():
        raise ConnectionError(f'{host} did not answer within {timeout:g} s')
    if failures:
        # requests wraps urllib3's error, whose `reason` says what failed: name lookup, refused connection, TLS.
        error = failures[0]
        cause = getattr(error.args[0] if error.args else None, 'reason', None)
        cause = cause if isinstance(cause, BaseException) else error
        raise ConnectionError(f'cannot reach {host} ({type(cause).__name__}: {cause})')


def _open_data_source(name: str, split: str, data_dir: str | None, download: bool):
    """The TFDS data source of one split, or DataError with one line that says what to do."""
    where = data_dir if data_dir is not None else f'the TFDS default directory {tfds.core.constants.DATA_DIR}'
    if data_dir is not None and not _is_remote(data_dir):
        # A typo'd path must fail at once, not after TFDS creates it and tries to download into it.
        if not os.path.isdir(data_dir):
            raise DataError(
                f"Data directory {data_dir} does not exist, so dataset '{name}' cannot be loaded. {_DATA_DIR_HINT}"
            )
        dataset_folder = os.path.join(data_dir, name.split(':')[0].split('/')[0])
        if not download and not os.path.isdir(dataset_folder):
            raise DataError(f"Dataset '{name}' is not in {data_dir} and download is off. {_DATA_DIR_HINT}")
    try:
        if download:
            _probe_download_host(name, data_dir)
        return tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    except Exception as error:  # TFDS raises many kinds: not found, network, missing TensorFlow for preparation.
        attempt = 'could not be downloaded' if download else 'download is off'
        raise DataError(
            f"Dataset '{name}' (split '{split}') is not usable in {where} and {attempt} "
            f'({type(error).__name__}: {_one_line(error)}). {_DATA_DIR_HINT}'
        ) from error


def load_split_arrays(
    name: str, split: str, data_dir: str | None = None, cache_dir: str | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, H, W, C] and int32 labels [N] of one TFDS split, decoded once and cached.

    The cache sits next to the data when that directory is writable, else in `cache_dir` (default ~/.cache/nets/tfds).
    """
    resolved = resolve_data_dir(data_dir)
    # Opening the source costs milliseconds and tells the version, the directory and the length that a cache must have.
    data_source = _open_data_source(name, split, resolved, download)
    num_examples = len(data_source)
    file_name = _cache_file_name(name, str(data_source.dataset_info.version), split)
    version_dir = str(data_source.dataset_info.data_dir)
    fallback_dir = os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR)
    sources = _sources_fingerprint(data_source, split)
    for directory in (version_dir, fallback_dir):
        cached = _read_cache(os.path.join(directory, file_name), num_examples, sources)
        if cached is not None:
            return cached

    _logger.info("Decoding %d examples of '%s' split '%s' once; later loads read the cache.", num_examples, name, split)
    try:
        images, labels = _decode_split(data_source)
    except Exception as error:  # array_record and the image decoders raise many kinds on a damaged file
        raise DataError(
            f"Dataset '{name}' (split '{split}') in {version_dir} cannot be decoded ({_error_name(error)}: "
            f'{_one_line(error)}); its files may be damaged or cut short: prepare it again. {_DATA_DIR_HINT}'
        ) from None
    target = version_dir if _is_writable_directory(version_dir) else fallback_dir
    try:
        _write_cache(os.path.join(target, file_name), images, labels, sources)
    except OSError as error:
        # A missing cache only costs time on the next load; it is no reason to stop this run.
        _logger.warning('Could not write the cache in %s: %s', target, _one_line(error))
    return images, labels


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
    """Host arrays of the train, validation and test splits: uint8 images [N, H, W, C] and int32 labels [N]."""

    train_images: np.ndarray
    train_labels: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int


def _check_limit(limit: int | None, argument: str) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f'{argument} must be None or at least 1, got {limit}.')


def load_splits(
    name: str = 'mnist',
    data_dir: str | None = None,
    cache_dir: str | None = None,
    validation_size: int = 10_000,
    split_seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Splits:
    """Train, a validation split held out from train, and test.

    Validation = last `validation_size` examples after a fixed permutation (np.random.default_rng(split_seed)) of TFDS
    train; validation_size=0 gives an empty validation split and trains on all of train. A limit keeps the first n.
    """
    if validation_size < 0:
        raise ValueError(f'validation_size must be at least 0, got {validation_size}.')
    _check_limit(train_limit, 'train_limit')
    _check_limit(test_limit, 'test_limit')
    all_train_images, all_train_labels = load_split_arrays(name, 'train', data_dir, cache_dir)
    test_images, test_labels = load_split_arrays(name, 'test', data_dir, cache_dir)
    num_train = len(all_train_labels)
    if validation_size >= num_train:
        raise ValueError(
            f"validation_size must be smaller than the {num_train} training examples of '{name}', "
            f'got {validation_size}.'
        )

    permutation = np.random.default_rng(split_seed).permutation(num_train)
    # Sorting keeps TFDS order inside each part, so validation_size=0 gives exactly the TFDS train split.
    train_indices = np.sort(permutation[: num_train - validation_size])[:train_limit]
    validation_indices = np.sort(permutation[num_train - validation_size :])
    # Counted on the full splits so that a small limit cannot hide a class.
    num_classes = int(max(all_train_labels.max(), test_labels.max())) + 1
    return Splits(
        train_images=all_train_images[train_indices],
        train_labels=all_train_labels[train_indices],
        validation_images=all_train_images[validation_indices],
        validation_labels=all_train_labels[validation_indices],
        test_images=test_images[:test_limit],
        test_labels=test_labels[:test_limit],
        num_classes=num_classes,
    )


def few_label_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of a class-balanced subset: `per_class` examples of every class, chosen with `seed`, sorted."""
    if per_class < 0:
        raise ValueError(f'per_class must be at least 0, got {per_class}.')
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) and counts.min() < per_class:
        short = classes[counts < per_class].tolist()
        raise ValueError(f'per_class={per_class} is more than classes {short} have (fewest: {counts.min()}).')
    rng = np.random.default_rng(seed)
    # Classes are visited in sorted order so that one seed always draws the same subset.
    chosen = [rng.choice(np.flatnonzero(labels == label), size=per_class, replace=False) for label in classes]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 images as float32 in [0, 1], flattened to [N, H*W*C], on the host."""
    # One fixed expression gives the same bits on every run; the explicit feature count lets an empty split
    # (N = 0) reshape too.
    features = int(np.prod(images.shape[1:]))
    return np.asarray(images).reshape(len(images), features).astype(np.float32) / 255


def to_device(images: np.ndarray, labels: np.ndarray, sharding=None) -> tuple[jax.Array, jax.Array]:
    """float32 images in [0, 1] flattened to [N, H*W*C] and int32 labels, placed on the device (or with `sharding`)."""
    return (jax.device_put(normalize(images), sharding), jax.device_put(np.asarray(labels, dtype=np.int32), sharding))
