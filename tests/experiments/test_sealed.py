"""The sealed-test check: every experiment's :quick, run again with the test labels permuted, makes the same choices
and trains the same curves. A choice that read the test split would change with its labels, and so would everything
trained after it."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, 'experiments')) if name[0] != '_')


def _curves(results):
    """Every member's training and validation history: what a choice made on test would change downstream."""
    return {
        (variant, label): [{k: v for k, v in row.items() if k.startswith(('train_', 'val_'))} for row in run['history']]
        for variant, members in results['runs'].items()
        for label, run in members.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize('name', EXPERIMENTS)
def test_permuted_test_labels_change_no_choice_and_no_curve(quick, name):
    _, results, _ = quick(name)
    _, permuted, _ = quick(name, permuted=True)
    assert permuted.get('choices') == results.get('choices')
    assert _curves(permuted) == _curves(results)
