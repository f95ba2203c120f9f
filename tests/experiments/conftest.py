"""In-process runs of the experiments' `:quick` configs, each run once per test session and shared by the tests of
tests/experiments, and the same run with the test labels permuted (the sealed-test check, `sealed`). Each
experiment's tests live in one file, test_NAME.py, so that `--dist loadfile` runs them, and its :quick run, in one
worker."""

import importlib
import json

import numpy as np
import pytest

from nets.results import SPLIT_PREFIXES


def permuted_test_labels(load_splits):
    """`nets.data.load_splits` with the test labels permuted: what a run may compute from test changes, and
    nothing it chooses may."""

    def load(*args, **kwargs):
        splits = load_splits(*args, **kwargs)
        order = np.random.default_rng(12345).permutation(len(splits.test_labels))
        return type(splits)(**{**splits.__dict__, 'test_labels': splits.test_labels[order]})

    return load


@pytest.fixture(scope='session')
def quick(data_dir, tmp_path_factory):
    """quick(name, permuted=False) -> (config, results.json, workdir): the experiment's :quick run in this process,
    run once per session (with the test labels permuted, when asked)."""
    from nets import data as data_lib, experiment

    done = {}

    def run(name: str, permuted: bool = False):
        if (name, permuted) not in done:
            module = importlib.import_module(f'experiments.{name}')
            config = module.get_config('quick')
            workdir = tmp_path_factory.mktemp(f'{name}-{"permuted" if permuted else "quick"}')
            load = data_lib.load_splits
            if permuted:
                data_lib.load_splits = permuted_test_labels(load)
            try:
                experiment.run(module, config, str(workdir), data_dir=data_dir)
            finally:
                data_lib.load_splits = load
            done[name, permuted] = (config, json.loads((workdir / 'results.json').read_text()), workdir)
        return done[name, permuted]

    return run


def _curves(results):
    """Every member's training and validation history: what a choice made on test would change downstream."""
    return {
        (variant, label): [{k: v for k, v in row.items() if k.startswith(SPLIT_PREFIXES)} for row in run['history']]
        for variant, members in results['runs'].items()
        for label, run in members.items()
    }


@pytest.fixture(scope='session')
def sealed(quick):
    """sealed(name): the sealed-test check. Experiment `name`'s :quick, run again with the test labels permuted, must
    make the same choices and train the same curves: a choice that read the test split would change with its labels,
    and so would everything trained after it."""

    def check(name: str):
        _, results, _ = quick(name)
        _, permuted, _ = quick(name, permuted=True)
        assert 'choices' in results and 'claims' in results
        assert permuted['choices'] == results['choices']
        assert _curves(permuted) == _curves(results)

    return check


VERDICTS = ('supported', 'contradicted', 'inconclusive')


@pytest.fixture(scope='session')
def protocol(quick):
    """protocol(name, seeds=5): experiment `name` is under the results protocol. Its full config confirms on at least
    `seeds` seeds that its development never used, and its :quick run states claims: each a difference between
    variants it trained (or against a published `reference`) over the run's seeds, with an interval that holds the
    difference and one of the three verdicts."""

    def check(name: str, seeds: int = 5):
        full = importlib.import_module(f'experiments.{name}').get_config()
        assert full.development_seeds, f'{name}: the full config names no development seeds'
        assert len(full.seeds) >= seeds and not set(full.seeds) & set(full.development_seeds)
        config, results, _ = quick(name)
        assert results['claims'], f'{name}: its :quick run states no claim'
        for claim in results['claims']:
            a, b = claim['variants']
            assert a in results['runs'] and ('reference' in claim or b in results['runs']), claim
            assert claim['verdict'] in VERDICTS and claim['seeds'] == len(config.seeds)
            low, high = claim['interval']
            assert low is None or low <= claim['value'] <= high

    return check
