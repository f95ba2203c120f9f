"""The input-standardization experiment: its step-size choice, its headline numbers and the toy's geometry."""

import json

import numpy as np
import pytest

from experiments import standardization


@pytest.fixture(scope='module')
def quick(data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('standardization')
    summary = standardization.run(standardization.get_config('quick'), str(workdir), data_dir=data_dir)
    return summary, json.loads((workdir / 'results.json').read_text()), workdir


@pytest.mark.slow
def test_standardizing_the_toy_makes_the_contours_round_and_sgd_converge_sooner(quick):
    summary, _, workdir = quick
    # Feature standard deviations 1 and 10: the raw Hessian's condition number is about 100, the standardized ~1.
    assert 50 < summary['toy_raw_condition_number'] < 200 and summary['toy_standardize_condition_number'] < 1.5
    assert summary['toy_standardize_final_relative_excess_loss'] < summary['toy_raw_final_relative_excess_loss']
    raw_steps, standardized_steps = summary['toy_raw_steps_to_1_percent'], summary['toy_standardize_steps_to_1_percent']
    assert 0 < standardized_steps and (raw_steps == -1 or standardized_steps < raw_steps)
    assert (workdir / 'toy_paths.png').stat().st_size > 0


@pytest.mark.slow
def test_mnist_headlines_are_the_chosen_step_sizes_mean_over_seeds(quick):
    summary, results, _ = quick
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


def test_convergence_counts_steps_until_every_seed_stays_within_one_percent():
    excess = np.array([[0.5, 0.5], [0.005, 0.02], [0.009, 0.5], [0.001, 0.001], [0.0, 0.002]])  # [epochs, seeds]
    assert standardization.convergence(excess, steps_per_epoch=10) == {'steps_to_1_percent': 40, 'final': 0.001}
    diverged = np.array([[0.5, 0.5], [0.001, np.nan]])
    assert standardization.convergence(diverged, 10) == {'steps_to_1_percent': -1, 'final': float('inf')}
    assert standardization.fastest_first({'steps_to_1_percent': -1, 'final': 0.0}) > standardization.fastest_first(
        {'steps_to_1_percent': 300, 'final': 0.5}
    )
