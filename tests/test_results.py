"""nets/results.py's statistics: intervals over seeds, paired differences and verdicts, against scipy and by hand."""

import json

import numpy as np
import pytest
from scipy import stats

from nets import report, results


def test_the_t_interval_of_a_hand_case():
    # 1..5: mean 3, s = sqrt(2.5), t(0.975, 4) = 2.776445: 3 -+ 2.776445 * sqrt(2.5 / 5).
    found = results.interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert found['mean'] == 3.0 and found['n'] == 5 and found['method'] == 't'
    assert found['low'] == pytest.approx(3 - 2.776445 * np.sqrt(0.5), abs=1e-6)
    assert found['high'] == pytest.approx(3 + 2.776445 * np.sqrt(0.5), abs=1e-6)


@pytest.mark.parametrize('n, confidence', [(2, 0.95), (3, 0.95), (5, 0.9), (10, 0.99)])
def test_the_t_interval_is_scipys(n, confidence):
    values = np.random.default_rng(n).normal(0.98, 0.002, n)
    low, high = stats.t.interval(confidence, n - 1, loc=np.mean(values), scale=stats.sem(values))
    found = results.interval(values, confidence=confidence)
    assert (found['low'], found['high']) == pytest.approx((low, high), rel=1e-12)


def test_the_bootstrap_interval_agrees_with_scipys_percentile_bootstrap_and_repeats_with_its_seed():
    values = np.random.default_rng(0).normal(0.0, 1.0, 10)
    found = results.interval(values, method='bootstrap', resamples=20_000)
    reference = stats.bootstrap((values,), np.mean, method='percentile', n_resamples=20_000, rng=1)
    ci = reference.confidence_interval
    # Different draws: the ends agree to a few hundredths of the spread (s = 1 here).
    assert found['low'] == pytest.approx(ci.low, abs=0.05) and found['high'] == pytest.approx(ci.high, abs=0.05)
    assert found == results.interval(values, method='bootstrap', resamples=20_000)
    assert found != results.interval(values, method='bootstrap', resamples=20_000, seed=1)
    assert found['low'] < np.mean(values) < found['high']


def test_the_paired_difference_is_scipys_paired_t_interval():
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 0.01, 6)  # what a seed does to both arms: pairing removes it
    a = dict(enumerate(0.97 + seed_effect + 0.002 + rng.normal(0, 0.0005, 6)))
    b = dict(enumerate(0.97 + seed_effect + rng.normal(0, 0.0005, 6)))
    paired = results.paired_difference(a, b)
    reference = stats.ttest_rel(list(a.values()), list(b.values())).confidence_interval(0.95)
    assert (paired['low'], paired['high']) == pytest.approx((reference.low, reference.high), rel=1e-10)
    # The seed effect swamps the difference between the arms, unless the members are paired by seed.
    unpaired = stats.ttest_ind(list(a.values()), list(b.values())).confidence_interval(0.95)
    assert unpaired.low < 0 < paired['low']
    # Pairing follows the seeds, not the order they are listed in.
    assert results.paired_difference(a, dict(reversed(list(b.items())))) == paired


def test_a_difference_against_a_number_is_the_one_sample_t_interval():
    values = [0.9841, 0.9838, 0.9845, 0.9843, 0.9839]
    found = results.paired_difference(dict(enumerate(values)), 0.984)
    reference = stats.ttest_1samp(values, 0.984).confidence_interval(0.95)  # of the mean, not of the difference
    assert (found['low'], found['high']) == pytest.approx((reference.low - 0.984, reference.high - 0.984), rel=1e-9)


def test_a_paired_difference_refuses_unmatched_seeds():
    with pytest.raises(ValueError, match='the same seeds on both sides'):
        results.paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 2: 2.0})


@pytest.mark.parametrize(
    'low, high, expected, verdict',
    [
        (0.001, 0.003, 'greater', 'supported'),
        (-0.003, -0.001, 'greater', 'contradicted'),
        (-0.003, -0.001, 'less', 'supported'),
        (0.001, 0.003, 'less', 'contradicted'),
        (-0.001, 0.003, 'greater', 'inconclusive'),
        (-0.003, 0.001, 'less', 'inconclusive'),
        (0.0, 0.003, 'greater', 'inconclusive'),
        (None, None, 'greater', 'inconclusive'),
        (float('nan'), float('nan'), 'greater', 'inconclusive'),  # a diverged member's NaN
        (float('nan'), float('nan'), 'less', 'inconclusive'),
        (0.001, float('inf'), 'greater', 'inconclusive'),
    ],
)
def test_the_verdict_is_inconclusive_when_the_interval_holds_zero(low, high, expected, verdict):
    assert results.verdict({'low': low, 'high': high}, expected) == verdict


def test_a_claim_on_one_seed_has_no_interval_and_is_inconclusive():
    found = results.claim('at least Keras', 'test_accuracy', ['refit', 'keras'], {0: 0.99}, 0.984)
    assert found['interval'] == [None, None] and found['verdict'] == 'inconclusive'
    assert found['value'] == pytest.approx(0.006)


def test_a_claim_records_its_interval_and_verdict():
    a = {seed: 0.986 + 0.0002 * seed for seed in range(5)}
    found = results.claim('at least Keras', 'test_accuracy', ['refit', 'keras'], a, 0.984)
    assert found['verdict'] == 'supported' and found['seeds'] == 5 and found['reference'] == 0.984
    assert 'reference' not in results.claim('paired', 'test_accuracy', ['a', 'b'], a, dict(a))  # two variants
    low, high = found['interval']
    assert low < found['value'] < high and low > 0
    assert (
        results.claim('below Keras', 'test_accuracy', ['refit', 'keras'], a, 0.984, expected='less')['verdict']
        == 'contradicted'
    )


def test_an_unknown_interval_method_is_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown interval method 'wilson'; allowed: t, bootstrap"):
        results.interval([1.0, 2.0], method='wilson')


def test_by_seed_keys_each_members_value_by_its_seed_and_refuses_two_of_one_seed():
    members = {
        'seed=101': {'seed': 101, 'test': {'accuracy': 0.9}, 'history': [{'val_loss': 0.5}]},
        'seed=100': {'seed': 100, 'test': {'accuracy': 0.8}, 'history': [{'val_loss': 0.7}]},
    }
    assert results.by_seed(members) == {101: 0.9, 100: 0.8}
    assert results.by_seed(members, lambda run: run['history'][-1]['val_loss']) == {101: 0.5, 100: 0.7}
    with pytest.raises(ValueError, match='two members of seed 100'):
        results.by_seed({**members, 'seed=100,lr=1': members['seed=100']})


def test_mean_of_last_averages_only_the_last_epochs():
    run = {'history': [{'test_accuracy': value} for value in (0.1, 0.5, 0.7, 0.9)]}
    assert results.mean_of_last('test_accuracy', 2)(run) == pytest.approx(0.8)
    assert results.mean_of_last('test_accuracy', 1)(run) == pytest.approx(0.9)


@pytest.mark.parametrize(
    'low, high, verdict',
    [
        (-0.004, 0.003, 'supported'),  # wholly inside ±0.005
        (-0.005, 0.005, 'supported'),  # the ends count as inside
        (0.006, 0.02, 'contradicted'),  # wholly above the margin
        (-0.03, -0.0051, 'contradicted'),  # wholly below
        (-0.004, 0.008, 'inconclusive'),  # straddles an end
        (-0.03, 0.03, 'inconclusive'),
        (None, None, 'inconclusive'),
        (float('nan'), 0.001, 'inconclusive'),
    ],
)
def test_an_equivalence_claim_is_supported_only_inside_its_margin(low, high, verdict):
    assert results.verdict({'low': low, 'high': high}, 'within', margin=0.005) == verdict


def test_a_margin_goes_with_an_equivalence_claim_only():
    for expected, margin in (('within', None), ('within', 0.0), ('greater', 0.01)):
        with pytest.raises(ValueError, match='margin'):
            results.verdict({'low': 0.0, 'high': 0.1}, expected, margin)
    with pytest.raises(ValueError, match="unknown expected 'equal'; allowed: greater, less, within"):
        results.verdict({'low': 0.0, 'high': 0.1}, 'equal')


def test_an_equivalence_claim_records_its_margin_and_the_table_states_it():
    a, b = {0: 0.970, 1: 0.972, 2: 0.971}, {0: 0.969, 1: 0.972, 2: 0.970}
    found = results.claim(
        'does not matter much', 'test_accuracy', ['relu', 'tanh'], a, b, expected='within', margin=0.01
    )
    assert found['margin'] == 0.01 and found['verdict'] == 'supported'
    table = '\n'.join(report.claims_table([found]))
    assert 'relu − tanh within ±0.01' in table and '**supported**' in table


def test_compare_pairs_two_variants_members_by_seed():
    run = lambda seed, accuracy, early: {
        'seed': seed,
        'test': {'accuracy': accuracy},
        'history': [{'val_accuracy': early}, {'val_accuracy': accuracy}],
    }
    runs = {
        'a': {'seed=1': run(1, 0.95, 0.5), 'seed=0': run(0, 0.97, 0.6)},  # labelled in another order than b's
        'b': {'seed=0': run(0, 0.96, 0.4), 'seed=1': run(1, 0.93, 0.3)},
    }
    found = results.compare('a beats b', runs, 'a', 'b')
    assert found['variants'] == ['a', 'b'] and found['value'] == pytest.approx(((0.97 - 0.96) + (0.95 - 0.93)) / 2)
    early = results.compare(
        'a is ahead early', runs, 'a', 'b', 'val_accuracy after epoch 1', results.after_epoch('val_accuracy', 1)
    )
    assert early['metric'] == 'val_accuracy after epoch 1' and early['value'] == pytest.approx(0.2)


def test_the_trailing_mean_averages_each_value_with_the_ones_before_it():
    np.testing.assert_allclose(results.trailing_mean([1.0, 3.0, 5.0, 10.0], 2), [1.0, 2.0, 4.0, 7.5])
    np.testing.assert_allclose(results.trailing_mean([1.0, 3.0, 5.0, 10.0], 3), [1.0, 2.0, 3.0, 6.0])
    np.testing.assert_allclose(results.trailing_mean([2.0, 4.0], 1), [2.0, 4.0])


def test_epochs_to_reach_interpolates_between_the_epoch_before_and_the_one_that_reaches():
    # Epoch 2 ends at 0.90 and epoch 3 at 0.98: 0.96 is three quarters of the way, so 2.75 epochs.
    assert results.epochs_to_reach([0.5, 0.90, 0.98, 0.99], 0.96) == pytest.approx(2.75)
    assert results.epochs_to_reach([0.5, 0.90, 0.98], 0.98) == pytest.approx(3.0)
    assert results.epochs_to_reach([0.97, 0.99], 0.96) == 1.0  # the first epoch already reaches it
    assert results.epochs_to_reach([0.9, 0.97, 0.95, 0.99], 0.96) == pytest.approx(1 + 6 / 7)  # the first crossing
    assert np.isnan(results.epochs_to_reach([0.9, 0.95], 0.96))


def test_at_epochs_reads_a_cumulative_quantity_at_a_fractional_epoch():
    assert results.at_epochs([10.0, 14.0, 20.0], 2.75) == pytest.approx(18.5)
    assert results.at_epochs([10.0, 14.0, 20.0], 1.0) == 10.0
    assert np.isnan(results.at_epochs([10.0, 14.0], float('nan')))


def test_a_claim_against_a_number_records_it_and_the_table_names_the_number_and_its_source():
    found = results.claim('within twice', 'time_ratio', ['grown', 'lecture'], {0: 1.4, 1: 1.6, 2: 1.5}, 2.0,
                          expected='less')  # fmt: skip
    assert found['reference'] == 2.0 and found['value'] == pytest.approx(-0.5)
    table = '\n'.join(report.claims_table([found]))
    assert 'time_ratio: grown − 2 (lecture) < 0' in table


@pytest.mark.reliability
def test_a_write_never_follows_a_planted_link_and_an_interrupted_one_leaves_the_old_file(tmp_path):
    """Issue 25, item 3: links planted at the old temporary name and at the path itself leave their targets alone;
    a write that fails midway leaves the previous file and no temporary behind."""
    victim = tmp_path / 'victim.txt'
    victim.write_text('keep me')
    workdir = tmp_path / 'run'
    workdir.mkdir()
    (workdir / 'results.json.tmp').symlink_to(victim)
    (workdir / 'config.json').symlink_to(victim)
    results.write_json(str(workdir / 'results.json'), {'a': 1})
    results.write_json(str(workdir / 'config.json'), {'b': 2})
    assert victim.read_text() == 'keep me'
    assert not (workdir / 'config.json').is_symlink() and json.loads((workdir / 'config.json').read_text()) == {'b': 2}
    assert json.loads((workdir / 'results.json').read_text()) == {'a': 1}
    with pytest.raises(TypeError):
        results.write_json(str(workdir / 'results.json'), {'a': object()})
    assert json.loads((workdir / 'results.json').read_text()) == {'a': 1}
    assert sorted(p.name for p in workdir.iterdir()) == ['config.json', 'results.json', 'results.json.tmp']
