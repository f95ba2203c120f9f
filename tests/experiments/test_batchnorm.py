"""experiments/batchnorm.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import numpy as np
import pytest

from experiments import batchnorm


@pytest.mark.slow
def test_batchnorm_quick_chooses_on_validation_and_compares_at_every_checkpoint(quick):
    _, results, workdir = quick('batchnorm')
    summary, runs = results['summary'], results['runs']
    for net in ('bn', 'plain'):
        # The chosen schedule and rate have the best mean final validation accuracy among the candidates.
        finals = {}
        for schedule in ('constant', 'cosine_decay'):
            for run in runs[f'{net}_{schedule}'].values():
                key = (schedule, run['hparams']['optimizer.learning_rate'])
                finals.setdefault(key, []).append(run['history'][-1]['val_accuracy'])
        best = max(finals, key=lambda key: np.mean(finals[key]))
        assert (summary[f'{net}_schedule'], summary[f'{net}_learning_rate']) == best
    chosen = lambda net: [run for run in runs[f'{net}_{summary[f"{net}_schedule"]}'].values()
                          if run['hparams']['optimizer.learning_rate'] == summary[f'{net}_learning_rate']]  # fmt: skip
    curve = lambda net: np.mean([[row['test_accuracy'] for row in run['history']] for run in chosen(net)], 0)
    above = curve('bn') > curve('plain')
    # :quick is shorter than one 10,000-step checkpoint, so its one checkpoint is the last epoch.
    steps = summary['checkpoint_steps']
    assert len(steps) == 1
    assert summary['bn_above_plain_everywhere'] == bool(above[-1])
    assert summary['bn_above_plain_epochs'] == int(np.sum(above)) and summary['epochs'] == len(above)
    report_text = (workdir / 'report.md').read_text()
    assert "\n## (a) Test accuracy at the checkpoints of Ioffe & Szegedy's Fig. 1" in report_text
    assert summary['bn_accuracy_final'] == pytest.approx(np.mean([run['test']['accuracy'] for run in chosen('bn')]))
    # The sigmoid-input percentiles (15th, 50th, 85th) are recorded after every epoch, in order.
    percentiles = runs['bn_constant']['seed=0,optimizer.learning_rate=1']['history'][-1]['sigmoid_input_percentiles']
    assert percentiles == sorted(percentiles)
    assert {'nikolenko_plain_accuracy', 'nikolenko_bn_accuracy', 'bn_before_accuracy', 'bn_after_accuracy'} <= set(
        summary
    )


def test_batchnorm_checkpoints_are_the_epochs_nearest_every_10k_steps():
    # 833 steps an epoch: 10k, 20k, ... steps end nearest epochs 12 (9,996 steps), 24, 36, 48 and 60 (49,980).
    assert batchnorm.checkpoint_epochs(10_000, 833, 60) == [12, 24, 36, 48, 60]
    assert batchnorm.checkpoint_epochs(10_000, 833, 30) == [12, 24]  # 24,990 steps: 10k and 20k only
    assert batchnorm.checkpoint_epochs(1_000, 400, 10) == [2, 5, 8, 10]  # 2.5 rounds to 2, 7.5 to 8 (half to even)
    assert batchnorm.checkpoint_epochs(10_000, 11, 2) == [2]  # shorter than one checkpoint: the last epoch


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('batchnorm')


@pytest.mark.slow
def test_it_confirms_on_fresh_seeds_and_states_its_claims(protocol):
    protocol('batchnorm')
