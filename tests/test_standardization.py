"""The input-standardization experiment: its step-size choice, its headline numbers and the toy's geometry."""

import numpy as np

from experiments import standardization


def test_convergence_counts_steps_until_every_seed_stays_within_one_percent():
    excess = np.array([[0.5, 0.5], [0.005, 0.02], [0.009, 0.5], [0.001, 0.001], [0.0, 0.002]])  # [epochs, seeds]
    assert standardization.convergence(excess, steps_per_epoch=10) == {'steps_to_1_percent': 40, 'final': 0.001}
    diverged = np.array([[0.5, 0.5], [0.001, np.nan]])
    assert standardization.convergence(diverged, 10) == {'steps_to_1_percent': -1, 'final': float('inf')}
    assert standardization.fastest_first({'steps_to_1_percent': -1, 'final': 0.0}) > standardization.fastest_first(
        {'steps_to_1_percent': 300, 'final': 0.5}
    )
