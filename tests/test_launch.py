"""launch.py end to end with :quick: results.json, refusals with one clear line, and bit-identical resume."""

import fcntl
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from experiments import baseline, batchnorm
from nets import checkpoint, tasks, train
from test_report import strict_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = 'experiments/baseline.py:quick'


@pytest.fixture(scope='module')
def compilation_cache(tmp_path_factory):
    return tmp_path_factory.mktemp('compilation_cache')


@pytest.fixture(scope='module')
def launch(data_dir, compilation_cache):
    def run(*flags, expect_success=True):
        command = [
            sys.executable,
            'launch.py',
            f'--data_dir={data_dir}',
            f'--compilation_cache_dir={compilation_cache}',
            *flags,
        ]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
        if expect_success:
            assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run


@pytest.fixture(scope='module')
def quick_run(launch, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('quick') / 'run'
    result = launch(f'--config={QUICK}', f'--workdir={workdir}')
    return workdir, result


def test_quick_run_writes_valid_results(quick_run):
    workdir, result = quick_run
    results = json.loads((workdir / 'results.json').read_text())
    assert set(results) >= {'summary', 'config', 'seeds', 'versions', 'runs'}
    summary = results['summary']
    for key in ('test_accuracy', 'best_val_accuracy'):
        assert 0.5 < summary[key] <= 1.0, (key, summary[key])  # one epoch on 2,000 images is well above chance
    assert summary['epoch_seconds'] > 0 and summary['compile_seconds'] > 0
    assert set(results['versions']) >= {'jax', 'flax', 'optax'}
    assert results['config']['epochs'] == 1 and results['seeds'] == [0]
    history = results['runs']['baseline']['seed=0']['history']
    assert [row['epoch'] for row in history] == [1] and 'val_accuracy' in history[0]
    # The headline is the refit on train + validation; the validation run's test accuracy is kept beside it.
    assert math.isclose(results['runs']['refit']['seed=0']['test']['accuracy'], summary['test_accuracy'])
    assert math.isclose(
        results['runs']['baseline']['seed=0']['test']['accuracy'], summary['test_accuracy_without_refit']
    )
    assert math.isclose(max(row['val_accuracy'] for row in history), summary['best_val_accuracy'])
    for name in ('history.csv', 'report.md', 'curves.png'):
        assert (workdir / name).stat().st_size > 0
    assert 'report.md' in result.stdout and 'epoch   1' in result.stdout


@pytest.mark.slow
def test_second_run_reads_every_program_from_the_compilation_cache(launch, quick_run, compilation_cache, tmp_path):
    entries = lambda: sorted(path.name for path in compilation_cache.rglob('*') if path.is_file())
    first = entries()
    assert first, 'the first run wrote nothing to the persistent compilation cache'
    launch(f'--config={QUICK}', f'--workdir={tmp_path / "again"}')
    assert entries() == first  # a cache miss would have added an entry


def _one_error_line(result) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if 'error' in line.lower()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_existing_workdir_is_not_overwritten(launch, quick_run):
    workdir, _ = quick_run
    before = (workdir / 'results.json').read_bytes()
    line = _one_error_line(launch(f'--config={QUICK}', f'--workdir={workdir}', expect_success=False))
    assert '--resume' in line and str(workdir) in line
    assert (workdir / 'results.json').read_bytes() == before


def test_unknown_activation_exits_with_one_clear_line(launch, tmp_path):
    result = launch(
        f'--config={QUICK}', f'--workdir={tmp_path / "run"}', '--config.model.activation=swish', expect_success=False
    )
    line = _one_error_line(result)
    assert 'config.model.activation' in line and "'swish'" in line and "'relu'" in line
    assert not (tmp_path / 'run' / 'results.json').exists()


def test_missing_data_dir_exits_with_one_clear_line(launch, tmp_path):
    result = launch(
        f'--config={QUICK}', f'--workdir={tmp_path / "run"}', '--data_dir=/no/such/tfds', expect_success=False
    )
    line = _one_error_line(result)
    assert '/no/such/tfds' in line and '--data_dir' in line
    assert not (tmp_path / 'run').exists()  # the run failed before its first checkpoint: no trace left behind


@pytest.mark.parametrize(
    'flags,words',
    [
        (['--config=experiments/no_such_experiment.py'], ['cannot be loaded', 'no_such_experiment.py']),
        ([f'--config={QUICK}', '--config.no_such_key=1'], ["unknown --config key 'no_such_key'"]),
        (['--config=experiments/baseline.py:bogus'], ["unknown baseline config argument 'bogus'"]),
        ([f'--config={QUICK}', '--config.epochs=ten'], ['--config.epochs', 'ten']),
        ([f'--config={QUICK}', '--config.epochs=0'], ['config.epochs', '>= 1', 'got 0']),
        ([f'--config={QUICK}', '--config.seeds=()'], ['config.seeds', 'at least one']),
        ([f'--config={QUICK}', '--config.seeds=(3,3)'], ['config.seeds', 'twice']),
        ([f'--config={QUICK}', '--config.optimizer.learning_rate=nan'], ['config.optimizer.learning_rate', '> 0']),
        ([f'--config={QUICK}', '--config.batch_size=5000'], ['config.batch_size', '2000 training examples']),
        ([f'--config={QUICK}', '--config.model.hidden_widths=(0,)'], ['config.model.hidden_widths[0]', '>= 1']),
        # Fields read together (issue 22): each once failed mid-run with no field named, leaving checkpoints behind.
        (
            ['--config=experiments/pruning.py:quick', '--config.neuron_widths=((64,64),)'],
            ['config.neuron_widths', '(64, 64)', 'trained (32, 16)'],
        ),
        (
            ['--config=experiments/pretraining.py:quick', '--config.units.group_width=5'],
            ['config.units.group_width', 'divisor', '32 units', 'got 5'],
        ),
        (
            ['--config=experiments/growth.py:quick', '--config.growth.layer=5'],
            ['config.growth.layer', '0 to 0', 'got 5'],
        ),
    ],
)
def test_bad_input_exits_with_one_line_before_any_data_loads(launch, tmp_path, flags, words):
    workdir = tmp_path / 'run'
    # A data directory that does not exist: a check that came after loading would fail on it instead.
    result = launch(*flags, f'--workdir={workdir}', '--data_dir=/no/such/tfds', expect_success=False)
    line = _one_error_line(result)
    assert all(word in line for word in words), line
    assert 'Traceback' not in result.stderr
    assert not workdir.exists()  # nothing left that would block a plain re-run


def test_a_busy_workdir_is_refused_at_once(launch, tmp_path):
    workdir = tmp_path / 'busy'
    workdir.mkdir()
    with open(workdir / '.lock', 'a+') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = _one_error_line(launch(f'--config={QUICK}', f'--workdir={workdir}', expect_success=False))
    assert 'in use by another run' in line and str(workdir) in line
    assert sorted(path.name for path in workdir.iterdir()) == ['.lock']


def test_resume_with_a_changed_learning_rate_is_refused_naming_it(launch, quick_run):
    workdir, _ = quick_run
    before = (workdir / 'results.json').read_bytes()
    result = launch(
        f'--config={QUICK}', f'--workdir={workdir}', '--resume', '--config.optimizer.learning_rate=0.01',
        expect_success=False,
    )  # fmt: skip
    line = _one_error_line(result)
    assert '--config.optimizer.learning_rate=0.01' in line and '0.001' in line
    assert (workdir / 'results.json').read_bytes() == before


@pytest.mark.slow
def test_a_diverged_run_writes_strict_json_marks_the_member_and_exits_non_zero(launch, tmp_path):
    workdir = tmp_path / 'diverged'
    result = launch(
        f'--config={QUICK}', f'--workdir={workdir}', '--config.optimizer.learning_rate=1e30', '--config.epochs=3',
        '--config.refit=False', expect_success=False,
    )  # fmt: skip
    assert result.returncode == 3
    line = _one_error_line(result)
    assert 'diverged' in line and 'baseline/seed=0 in epoch 1' in line
    results = strict_json((workdir / 'results.json').read_text())
    assert results['diverged'] == {'baseline/seed=0': 1}
    assert len(results['runs']['baseline']['seed=0']['history']) == 1  # it stopped at the end of that epoch
    assert 'Diverged' in (workdir / 'report.md').read_text()


def test_results_record_the_commit_the_device_and_every_config_field(quick_run):
    workdir, _ = quick_run
    results = json.loads((workdir / 'results.json').read_text())
    versions = results['versions']
    assert len(versions['git_commit']) == 40 and versions['git_dirty'] in ('true', 'false')
    assert versions['backend'] == jax.default_backend() and versions['device'] and versions['orbax-checkpoint']
    assert results['config'] == json.loads(json.dumps(baseline.get_config('quick').to_dict()))
    assert json.loads((workdir / 'config.json').read_text()) == results['config']


@pytest.mark.slow
def test_none_valued_model_and_optimizer_fields_can_be_set_from_the_command_line(launch, tmp_path):
    workdir = tmp_path / 'batch_norm'
    launch(
        f'--config={QUICK}', f'--workdir={workdir}', '--config.model.batch_norm=before',
        '--config.model.activation=leaky_relu', '--config.model.negative_slope=0.2', '--config.refit=False',
        '--config.optimizer.name=adam', '--config.optimizer.b2=0.99', '--config.optimizer.schedule.name=cosine_decay',
        '--config.optimizer.schedule.decay_steps=40',
    )  # fmt: skip
    results = json.loads((workdir / 'results.json').read_text())
    assert results['config']['model']['batch_norm'] == 'before'
    assert results['config']['model']['negative_slope'] == 0.2
    assert results['config']['optimizer']['b2'] == 0.99
    task, hparams = tasks.build(results['config'], (784,))
    state, _ = _final_state(workdir, train.init_state(task, hparams, jax.random.PRNGKey(0), (784,)))
    assert list(state.batch_stats) == ['batch_norm_0']  # the net that trained had batch norm
    assert float(state.hparams['model.negative_slope']) == pytest.approx(0.2)
    adam = [s for s in jax.tree.leaves(state.opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]  # fmt: skip
    assert len(adam) == 1  # the run was Adam's, not the config file's RMSprop


def _final_state(workdir, like_state):
    saver = checkpoint.Checkpointer(str(workdir / 'checkpoints' / 'baseline'))
    try:
        return saver.restore(like_state)
    finally:
        saver.close()


@pytest.mark.slow
def test_resume_after_interruption_gives_bit_identical_params(launch, tmp_path):
    """A run stopped after epoch 1 and resumed to epoch 3 equals a run that went to epoch 3 at once."""
    seeds = '--config.seeds=(0,1)'  # a two-member sweep, so resume is checked on stacked states too
    interrupted, straight = tmp_path / 'interrupted', tmp_path / 'straight'
    launch(f'--config={QUICK}', f'--workdir={interrupted}', '--config.epochs=1', seeds)
    resumed = launch(f'--config={QUICK}', f'--workdir={interrupted}', '--config.epochs=3', seeds, '--resume')
    assert 'resumed after epoch 1' in resumed.stdout
    launch(f'--config={QUICK}', f'--workdir={straight}', '--config.epochs=3', seeds)

    task, hparams = tasks.build(baseline.get_config('quick'), (784,))
    like = train.init_members(task, [hparams] * 2, train.stack([jax.random.PRNGKey(0)] * 2), (784,))
    state_a, meta_a = _final_state(interrupted, like)
    state_b, meta_b = _final_state(straight, like)
    assert meta_a['epoch'] == meta_b['epoch'] == 3
    jax.tree.map(np.testing.assert_array_equal, state_a, state_b)
    results_a = json.loads((interrupted / 'results.json').read_text())
    results_b = json.loads((straight / 'results.json').read_text())
    assert results_a['summary']['test_accuracy'] == results_b['summary']['test_accuracy']
    strip = lambda runs: [
        {k: v for k, v in row.items() if 'seconds' not in k} for row in runs['baseline']['seed=1']['history']
    ]
    assert strip(results_a['runs']) == strip(results_b['runs'])


@pytest.mark.slow
def test_benchmark_quick_writes_its_headline_numbers(launch, tmp_path):
    launch('--config=experiments/benchmark.py:quick', f'--workdir={tmp_path / "bench"}')
    results = json.loads((tmp_path / 'bench' / 'results.json').read_text())
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
def test_the_lectures_keras_regularizers_fit_in_one_override(launch, quick_run, tmp_path):
    """Dense(kernel_regularizer=l1(0.001), bias_regularizer=l2(0.1), activity_regularizer=l2(0.01)) as one flag."""
    entry = "{'layers': '^dense_0$', 'kernel_l1': 0.001, 'bias_l2': 0.1, 'activity_l2': 0.01}"
    launch(f'--config={QUICK}', f'--workdir={tmp_path / "run"}', f'--config.penalties=({entry},)')
    results = json.loads((tmp_path / 'run' / 'results.json').read_text())
    assert results['config']['penalties'] == [{'layers': '^dense_0$', 'kernel_l1': 0.001, 'bias_l2': 0.1,
                                               'activity_l2': 0.01}]  # fmt: skip
    plain = json.loads((quick_run[0] / 'results.json').read_text())
    penalised_loss = results['runs']['baseline']['seed=0']['history'][0]['train_loss']
    assert penalised_loss != plain['runs']['baseline']['seed=0']['history'][0]['train_loss']


@pytest.mark.slow
def test_early_stopping_l2_quick_tracks_the_ridge_path(launch, tmp_path):
    """The lecture's early stopping ≈ L2: the gradient-descent weights stay near the ridge path, by the headline."""
    launch('--config=experiments/early_stopping_l2.py:quick', f'--workdir={tmp_path / "es"}')
    summary = json.loads((tmp_path / 'es' / 'results.json').read_text())['summary']
    # Near, not equal: 1 - exp(-x) against x / (1 + x) differ by up to ~20% of a direction's shrinkage.
    assert 0.05 < summary['max_relative_distance'] < 0.35
    assert 0 < summary['max_relative_distance_to_nearest_ridge'] < summary['max_relative_distance']
    assert 0 < summary['sgd_max_relative_distance'] < 0.35
    assert (tmp_path / 'es' / 'trajectory.png').stat().st_size > 0


@pytest.mark.slow
def test_overfitting_quick_chooses_strengths_on_validation_and_reports_every_variant(launch, tmp_path):
    launch('--config=experiments/overfitting.py:quick', f'--workdir={tmp_path / "of"}')
    results = json.loads((tmp_path / 'of' / 'results.json').read_text())
    summary, sweeps, chosen = results['summary'], results['sweeps'], results['chosen_strengths']
    variants = ('none', 'l2', 'l1', 'decay', 'dropout', 'dropout_maxnorm', 'early_stopping', 'combined', 'best')
    assert set(summary) == {f'{kind}_{v}' for v in variants for kind in ('test_accuracy', 'gap')} | {
        'mc_dropout_test_accuracy_dropout',
        'mc_dropout_test_accuracy_dropout_maxnorm',
        'best_variant',
    }
    assert 0.1 < summary['mc_dropout_test_accuracy_dropout'] <= 1
    # The chosen L2 strength is the candidate whose seeds have the best mean best-validation accuracy.
    by_strength = {}
    for run in sweeps['l2_300'].values():
        best = max(row['val_accuracy'] for row in run['history'])
        by_strength.setdefault(run['hparams']['penalties[0].kernel_l2'], []).append(best)
    assert chosen['l2_300'] == max(by_strength, key=lambda s: np.mean(by_strength[s]))
    # The reported test accuracy and gap are the chosen strength's, mean over seeds.
    kept = [run for run in sweeps['l2_300'].values() if run['hparams']['penalties[0].kernel_l2'] == chosen['l2_300']]
    assert summary['test_accuracy_l2'] == pytest.approx(np.mean([run['test']['accuracy'] for run in kept]))
    assert summary['gap_l2'] == pytest.approx(
        np.mean([run['train_accuracy_eval'] - run['test']['accuracy'] for run in kept])
    )
    # `combined` chooses its L2 strength, none included, on validation too; `best` is the variant whose chosen
    # members have the best mean best-validation accuracy, and its numbers are that variant's.
    assert {run['hparams']['penalties[0].kernel_l2'] for run in sweeps['combined_300'].values()} == {0.0, 1e-4, 0.1}
    assert chosen['combined_300'] in (0.0, 1e-4, 0.1)
    scores = {}
    for variant in variants[:-1]:
        kept = [run for run in sweeps[f'{variant}_300'].values()
                if chosen[f'{variant}_300'] is None or chosen[f'{variant}_300'] in run['hparams'].values()]  # fmt: skip
        scores[variant] = np.mean([max(row['val_accuracy'] for row in run['history']) for run in kept])
    assert summary['best_variant'] == max(scores, key=scores.get)
    best = summary['best_variant']
    assert (summary['test_accuracy_best'], summary['gap_best']) == (
        summary[f'test_accuracy_{best}'],
        summary[f'gap_{best}'],
    )
    assert (tmp_path / 'of' / 'test_accuracy.png').stat().st_size > 0


@pytest.mark.slow
def test_regularization_table_quick_chooses_each_strength_on_validation_and_trains_the_table_with_it(launch, tmp_path):
    launch('--config=experiments/regularization_table.py:quick', f'--workdir={tmp_path / "rt"}')
    results = json.loads((tmp_path / 'rt' / 'results.json').read_text())
    summary, runs, sweeps, config = results['summary'], results['runs'], results['sweeps'], results['config']
    names = ('l2', 'l2_l1', 'maxnorm', 'dropout_l2', 'dropout_maxnorm')
    assert set(runs) == set(sweeps) == set(names)
    l2, l1, radius = 'penalties[0].kernel_l2', 'penalties[0].kernel_l1', 'optimizer.transforms[0].max_norm'
    paths = {'l2': l2, 'l2_l1': l1, 'maxnorm': radius, 'dropout_l2': l2, 'dropout_maxnorm': radius}
    window = config['selection']['window']
    for name in names:
        # The selection never evaluates test, and its members train for the selection fraction of the epochs.
        assert all('test' not in run for run in sweeps[name].values())
        epochs = config['dropout_epochs' if 'dropout' in name else 'epochs']
        assert {len(run['history']) for run in sweeps[name].values()} == {
            round(epochs * config['selection']['fraction'])
        }
        # The chosen strength has the lowest validation error, the mean over the last `window` epochs.
        error = {}
        for run in sweeps[name].values():
            value = run['hparams'][paths[name]]
            error.setdefault(value, []).append(1 - np.mean([row['val_accuracy'] for row in run['history'][-window:]]))
        assert summary[f'chosen_{name}'] == min(error, key=lambda value: np.mean(error[value]))
        assert results['selection_errors'][name] == pytest.approx({f'{v:g}': np.mean(e) for v, e in error.items()})
        # The table trains every seed at that strength, for config.dropout_epochs with dropout, else config.epochs,
        # and its headline is the mean test error over them.
        assert [run['seed'] for run in runs[name].values()] == config['seeds']
        assert {run['hparams'][paths[name]] for run in runs[name].values()} == {summary[f'chosen_{name}']}
        assert {len(run['history']) for run in runs[name].values()} == {epochs}
        errors = [1 - run['test']['accuracy'] for run in runs[name].values()]
        assert summary[f'test_error_{name}'] == pytest.approx(np.mean(errors))
    # Some variant chose other than its first candidate, so the checks above tell `chosen` from the defaults.
    first_candidates = {'l2': config['l2'][0], 'dropout_l2': config['l2'][0], 'maxnorm': config['max_norm'][0]}
    first_candidates['dropout_maxnorm'] = config['max_norm'][0]
    assert any(summary[f'chosen_{name}'] != value for name, value in first_candidates.items())
    assert summary['wall_seconds'] > 0 and summary['selection_seconds'] > 0
    # Each variant really trains its own task: the penalties, transforms and dropout are in its config.
    first = lambda name: next(iter(runs[name].values()))['history']
    assert first('l2') != first('maxnorm')
    # How much max-norm binds, for its variants only: a radius of 0.5 holds most units on the ball after a few
    # epochs, 3 none in this small net; the table's share is a fraction.
    saturation = results['selection_saturation']
    assert set(saturation) == {'maxnorm', 'dropout_maxnorm'} and config['max_norm'] == [0.5, 3.0]
    for name in saturation:
        assert saturation[name]['0.5'] > 0.5 > saturation[name]['3']
        assert 0 <= summary[f'saturation_{name}'] <= 1
    report = (tmp_path / 'rt' / 'report.md').read_text()
    assert '## Strengths chosen on validation' in report and '524 training' not in report
    assert '% at c)' in report


@pytest.mark.slow
def test_initialization_quick_reports_every_headline_and_the_inits_really_differ(launch, tmp_path):
    launch('--config=experiments/initialization.py:quick', f'--workdir={tmp_path / "init"}')
    results = json.loads((tmp_path / 'init' / 'results.json').read_text())
    summary, runs, at_init = results['summary'], results['runs'], results['init_diagnostics']
    expected = {f'{init}_accuracy_{when}' for init in ('uniform', 'glorot_normal') for when in ('epoch_1', 'final')}
    expected |= {f'deep_{net}_{init}_accuracy' for net in ('relu', 'tanh') for init in ('he_normal', 'glorot_normal',
                                                                                      'uniform')}  # fmt: skip
    assert expected | {'uniform_accuracy_epoch_2'} <= set(summary)
    # The epoch headlines are the evaluation hook's test accuracy; the last one is the final test evaluation.
    shallow = runs['shallow_uniform'].values()
    assert summary['uniform_accuracy_epoch_1'] == pytest.approx(
        np.mean([r['history'][0]['test_accuracy'] for r in shallow])
    )
    for run in shallow:
        assert run['history'][-1]['test_accuracy'] == pytest.approx(run['test']['accuracy'])
    # Each variant initialises with its own init: at init, the deep ReLU net's last-layer pre-activation variance
    # is largest with He and smallest with U(-0.05, 0.05), by orders of magnitude (variance ~25x smaller a layer).
    last = {init: np.mean(np.asarray(at_init[f'deep_relu_{init}']['preactivation_variance'])[:, -1])
            for init in ('he_normal', 'glorot_normal', 'uniform')}  # fmt: skip
    assert last['he_normal'] > last['glorot_normal'] > 100 * last['uniform']
    assert (tmp_path / 'init' / 'deep_nets.png').stat().st_size > 0


@pytest.mark.slow
def test_activations_quick_counts_dead_units_and_the_shallow_spread(launch, tmp_path):
    launch('--config=experiments/activations.py:quick', f'--workdir={tmp_path / "act"}')
    results = json.loads((tmp_path / 'act' / 'results.json').read_text())
    summary, runs = results['summary'], results['runs']
    activations = ('sigmoid', 'tanh', 'relu', 'leaky_relu')
    assert {f'{a}_accuracy' for a in activations} | {'dead_fraction_relu', 'dead_fraction_leaky_relu'} <= set(summary)
    shallow = [summary[f'shallow_{a}_accuracy'] for a in activations]
    assert summary['shallow_spread'] == pytest.approx(max(shallow) - min(shallow))
    # A leaky unit's output is never exactly 0, so none is dead, though some may be inactive (z <= 0 everywhere).
    assert summary['dead_fraction_leaky_relu'] == 0.0
    assert 0 <= summary['dead_fraction_relu'] <= summary['inactive_fraction_relu'] <= 1
    # They are read at the highest rate where every member of both activations kept a finite loss.
    members = [run for a in ('relu', 'leaky_relu') for run in runs[f'dead_{a}'].values()]
    finite = [rate for rate in results['config']['dead']['learning_rates']
              if all(run['history'][-1]['train_loss'] is not None for run in members
                     if run['hparams']['optimizer.learning_rate'] == rate)]  # fmt: skip
    assert summary['dead_learning_rate'] == max(finite)
    # The dead part's members differ in their learning rate only, and each reports its own diagnostics.
    rates = {run['hparams']['optimizer.learning_rate'] for run in runs['dead_relu'].values()}
    assert len(rates) == len(results['config']['dead']['learning_rates'])
    assert all(
        run['final_diagnostics']['dead_fraction'] == run['history'][-1]['dead_fraction']
        for run in runs['dead_relu'].values()
    )


@pytest.mark.slow
def test_batchnorm_quick_chooses_on_validation_and_compares_at_every_checkpoint(launch, tmp_path):
    launch('--config=experiments/batchnorm.py:quick', f'--workdir={tmp_path / "bn"}')
    results = json.loads((tmp_path / 'bn' / 'results.json').read_text())
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
    report_text = (tmp_path / 'bn' / 'report.md').read_text()
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
def test_step_size_quick_picks_each_optimizers_rate_on_validation(launch, tmp_path):
    launch('--config=experiments/step_size.py:quick', f'--workdir={tmp_path / "lr"}')
    results = json.loads((tmp_path / 'lr' / 'results.json').read_text())
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
def test_presentation_order_quick_trains_every_order(launch, tmp_path):
    launch('--config=experiments/presentation_order.py:quick', f'--workdir={tmp_path / "order"}')
    results = json.loads((tmp_path / 'order' / 'results.json').read_text())
    summary, runs = results['summary'], results['runs']
    names = ('reshuffle', 'fixed', 'sorted_by_class', 'hardest_first', 'easiest_first', 'class_balanced')
    assert set(runs) == set(names)
    for name in names:
        assert summary[f'accuracy_{name}'] == pytest.approx(
            np.mean([r['test']['accuracy'] for r in runs[name].values()])
        )
    # Each order trains differently from the default reshuffle.
    loss = lambda name: runs[name]['seed=0']['history'][-1]['train_loss']
    assert len({loss(name) for name in names}) == len(names)


def test_a_fresh_run_refused_for_its_config_after_a_checkpoint_leaves_nothing_that_blocks_a_rerun(tmp_path):
    """A config error found mid-run: its own checkpoints go (a --resume would be refused for the changed config), a
    crash's stay for --resume, and nothing of an earlier run's is touched."""
    import launch as launcher

    def workdir(name, results=False):
        path = tmp_path / name
        (path / 'checkpoints' / 'dense' / '3').mkdir(parents=True)
        (path / launcher.RECORDED_CONFIG).write_text('{}')
        if results:
            (path / 'results.json').write_text('{}')
        return str(path)

    refused = workdir('refused')
    launcher.remove_traces(refused, created=False, own_checkpoints=True)
    launcher.check_workdir(refused, resume=False)  # a plain rerun may start
    crashed = workdir('crashed')
    launcher.remove_traces(crashed, created=False)
    assert launcher.saved_checkpoints(crashed) == ['dense/3']
    finished = workdir('finished', results=True)
    launcher.remove_traces(finished, created=False, own_checkpoints=True)
    assert launcher.saved_checkpoints(finished) == ['dense/3']
