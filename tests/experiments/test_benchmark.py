"""experiments/benchmark.py: its :quick run (shared with the sealed-test check) reports what it claims."""

import pytest


@pytest.mark.slow
def test_benchmark_quick_writes_its_headline_numbers(quick):
    _, results, workdir = quick('benchmark')
    summary = results['summary']
    for key in (
        'gemm_gflops',
        'epoch_seconds',
        'compile_seconds',
        'flops_per_epoch',
        'fraction_of_gemm_limit',
        'python_loop_epoch_seconds',
        'network_gemm_epoch_seconds',
    ):
        assert summary[key] > 0, key
    # The analytic FLOP count and XLA's own count of the same step agree to within the small non-matmul work.
    assert 0.9 < summary['xla_flops_per_epoch'] / summary['flops_per_epoch'] < 1.2
    assert {row['shuffle'] for row in results['sweeps']} == {'shared', 'per_member'}


@pytest.mark.slow
def test_permuted_test_labels_change_no_choice_and_no_curve(sealed):
    sealed('benchmark')
