"""experiments/pretraining.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import numpy as np
import pytest

from experiments import pretraining


@pytest.mark.slow
def test_quick_experiment_reports_every_method_and_chooses_the_factor_on_validation(quick):
    config, results, workdir = quick('pretraining')
    summary = results['summary']
    assert set(summary) == {'reconstruction_mse'} | {
        f'test_error_{method}_{labels}' for method in pretraining.METHODS for labels in config.labels
    }
    assert 0 < summary['reconstruction_mse'] < 0.25
    for labels in config.labels:
        sweep = results['sweeps'][f'ae_finetune_{labels}']
        path = 'optimizer.transforms[0].factor'
        scores = {
            f: np.mean([r['history'][-1]['val_accuracy'] for r in sweep.values() if r['hparams'][path] == f])
            for f in config.encoder_learning_rate_factors
        }
        chosen = results['chosen_values'][f'ae_finetune_{labels}']
        assert chosen == max(scores, key=scores.get)
        kept = [r for r in sweep.values() if r['hparams'][path] == chosen]
        assert summary[f'test_error_ae_finetune_{labels}'] == pytest.approx(
            np.mean([1 - r['test']['accuracy'] for r in kept])
        )
    for figure in ('test_error.png', 'reconstructions.png', 'first_layer_features.png', 'curves.png'):
        assert (workdir / figure).stat().st_size > 0


# Randomness that must differ between things sharing a seed, and resets that must happen (issue 26).


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('pretraining')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('pretraining')


def test_each_seed_draws_its_own_label_subset():
    from nets import data as data_lib, train

    config = pretraining.get_config('quick')
    labels = np.repeat(np.arange(10), 50)
    splits = data_lib.Splits(
        train_images=np.zeros((500, 4), np.float32),
        train_labels=labels,
        validation_images=None,
        validation_labels=None,
        test_images=None,
        test_labels=None,
        num_classes=10,
    )
    data = train.Data(np.arange(500, dtype=np.float32)[:, None], labels, None, None)
    subset = lambda seed: pretraining.labeled_data(config, splits, '100', data, seed)[1]
    assert len(subset(0)) == 100 and np.array_equal(subset(0), subset(0))
    assert not np.array_equal(subset(0), subset(1))
    assert np.array_equal(np.bincount(labels[subset(1)]), np.full(10, 10))  # class-balanced
