"""experiments/step_size.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import numpy as np
import pytest


@pytest.mark.slow
def test_step_size_quick_picks_each_optimizers_rate_on_validation(quick):
    _, results, workdir = quick('step_size')
    summary, runs = results['summary'], results['runs']
    for name in ('sgd', 'momentum', 'adam'):
        finals = {}
        for run in runs[f'sweep_{name}'].values():
            finals.setdefault(run['hparams']['optimizer.learning_rate'], []).append(run['history'][-1]['val_accuracy'])
        assert len(finals) == results['config']['grids'][name][2]
        assert summary[f'best_learning_rate_{name}'] == max(finals, key=lambda rate: np.mean(finals[rate]))
    schedules = ('constant', 'step_decay', 'cosine_decay', 'warmup_cosine_decay', 'reduce_on_plateau')
    assert {f'schedule_{name}_accuracy' for name in schedules} <= set(summary)
    # The schedules really differ: a decayed rate ends elsewhere than the constant one.
    final_loss = lambda name: runs[f'schedule_{name}']['seed=0']['history'][-1]['train_loss']
    assert final_loss('cosine_decay') != final_loss('constant')


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('step_size')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('step_size')
