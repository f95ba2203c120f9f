"""experiments/standardization.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import numpy as np
import pytest

from experiments import standardization


@pytest.fixture
def standardization_quick(quick):
    _, results, workdir = quick('standardization')
    return results['summary'], results, workdir


@pytest.mark.slow
def test_standardizing_the_toy_makes_the_contours_round_and_sgd_converge_sooner(standardization_quick):
    summary, _, workdir = standardization_quick
    # Feature standard deviations 1 and 10: the raw Hessian's condition number is about 100, the standardized ~1.
    assert 50 < summary['toy_raw_condition_number'] < 200 and summary['toy_standardize_condition_number'] < 1.5
    assert summary['toy_standardize_final_relative_excess_loss'] < summary['toy_raw_final_relative_excess_loss']
    raw_steps, standardized_steps = summary['toy_raw_steps_to_1_percent'], summary['toy_standardize_steps_to_1_percent']
    assert 0 < standardized_steps and (raw_steps == -1 or standardized_steps < raw_steps)
    assert (workdir / 'toy_paths.png').stat().st_size > 0


@pytest.mark.slow
def test_mnist_headlines_are_the_chosen_step_sizes_mean_over_seeds(standardization_quick):
    summary, results, _ = standardization_quick
    for name in standardization.MNIST:
        sweep = results['sweeps'][f'mnist_{name}']
        finals = {}
        for run in sweep.values():
            finals.setdefault(run['hparams']['optimizer.learning_rate'], []).append(run['history'][-1]['val_accuracy'])
        assert summary[f'mnist_{name}_learning_rate'] == max(finals, key=lambda rate: np.mean(finals[rate]))
        chosen = [run for run in sweep.values()
                  if run['hparams']['optimizer.learning_rate'] == summary[f'mnist_{name}_learning_rate']]  # fmt: skip
        assert summary[f'mnist_{name}_test_accuracy'] == pytest.approx(np.mean([r['test']['accuracy'] for r in chosen]))
        assert 0.1 < summary[f'mnist_{name}_test_accuracy'] <= 1
    # The three inputs really differ: the same seeds and step sizes give different first epochs.
    first = {name: results['sweeps'][f'mnist_{name}']['seed=0,optimizer.learning_rate=0.01']['history'][0]['train_loss']
             for name in standardization.MNIST}  # fmt: skip
    assert len(set(first.values())) == 3


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('standardization')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('standardization')
