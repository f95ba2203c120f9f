"""launch.py end to end with :quick: results.json, refusals with one clear line, and bit-identical resume."""

import fcntl
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

from experiments import baseline
from nets import checkpoint, runner, tasks, train
from test_report import strict_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = 'experiments/baseline.py:quick'


@pytest.fixture(scope='module')
def compilation_cache(tmp_path_factory):
    return tmp_path_factory.mktemp('compilation_cache')


@pytest.fixture(scope='module')
def launch(data_dir, compilation_cache):
    """launch(*flags) runs launch.py in a subprocess; launch(*flags, expect_success=False), a refusal, runs it in a
    child forked from a server that has imported its libraries once (tests/launch_server.py): the same argv, exit
    code, stdout and stderr, without the 3-5 s of imports."""
    server = subprocess.Popen(
        [sys.executable, os.path.join(REPO, 'tests', 'launch_server.py')],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def run(*flags, expect_success=True):
        argv = ['launch.py', f'--data_dir={data_dir}', f'--compilation_cache_dir={compilation_cache}', *flags]
        if expect_success:
            result = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
            return result
        server.stdin.write(json.dumps({'argv': argv, 'cwd': REPO, 'timeout': 600}) + '\n')
        server.stdin.flush()
        line = server.stdout.readline()
        assert line, f'tests/launch_server.py ended (exit code {server.poll()}) instead of answering'
        answer = json.loads(line)
        return subprocess.CompletedProcess(argv, answer['returncode'], answer['stdout'], answer['stderr'])

    yield run
    server.stdin.close()
    server.wait(timeout=60)


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


@pytest.mark.reliability
def test_existing_workdir_is_not_overwritten(launch, quick_run):
    workdir, _ = quick_run
    before = (workdir / 'results.json').read_bytes()
    line = _one_error_line(launch(f'--config={QUICK}', f'--workdir={workdir}', expect_success=False))
    assert '--resume' in line and str(workdir) in line
    assert (workdir / 'results.json').read_bytes() == before


@pytest.mark.reliability
def test_unknown_activation_exits_with_one_clear_line(launch, tmp_path):
    result = launch(
        f'--config={QUICK}', f'--workdir={tmp_path / "run"}', '--config.model.activation=swish', expect_success=False
    )
    line = _one_error_line(result)
    assert 'config.model.activation' in line and "'swish'" in line and "'relu'" in line
    assert not (tmp_path / 'run' / 'results.json').exists()


@pytest.mark.reliability
def test_missing_data_dir_exits_with_one_clear_line(launch, tmp_path):
    result = launch(
        f'--config={QUICK}', f'--workdir={tmp_path / "run"}', '--data_dir=/no/such/tfds', expect_success=False
    )
    line = _one_error_line(result)
    assert '/no/such/tfds' in line and '--data_dir' in line
    assert not (tmp_path / 'run').exists()  # the run failed before its first checkpoint: no trace left behind


@pytest.mark.reliability
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
        # Issue 25: the README's dict(...) form, which absl reads as a string, once gave a TypeError traceback; a
        # stray positional argument printed the whole usage text.
        (
            [f'--config={QUICK}', "--config.penalties=(dict(layers='^dense_0$', kernel_l2=0.1),)"],
            ['config.penalties', 'a tuple of dicts', "{'layers': '^dense_0$', 'kernel_l2': 0.1}"],
        ),
        ([f'--config={QUICK}', 'stray'], ['unexpected arguments: stray', 'only flags']),
    ],
)
def test_bad_input_exits_with_one_line_before_any_data_loads(launch, tmp_path, flags, words):
    workdir = tmp_path / 'run'
    # A data directory that does not exist: a check that came after loading would fail on it instead.
    result = launch(*flags, f'--workdir={workdir}', '--data_dir=/no/such/tfds', expect_success=False)
    line = _one_error_line(result)
    assert all(word in line for word in words), line
    assert result.stderr.strip() == line.strip()  # one line and nothing else: no traceback, no usage text
    assert not workdir.exists()  # nothing left that would block a plain re-run


@pytest.mark.reliability
def test_a_config_file_whose_get_config_returns_no_config_is_named(launch, tmp_path):
    (tmp_path / 'five.py').write_text('def get_config():\n    return 5\n')
    result = launch(f'--config={tmp_path / "five.py"}', f'--workdir={tmp_path / "run"}', expect_success=False)
    line = _one_error_line(result)
    assert result.returncode == 2 and 'five.py' in line and 'get_config returned 5 (int)' in line, line
    assert result.stderr.strip() == line.strip() and not (tmp_path / 'run').exists()


@pytest.mark.reliability
def test_a_resume_whose_config_json_is_corrupt_names_the_file_and_keeps_it(launch, tmp_path):
    workdir = tmp_path / 'run'
    workdir.mkdir()
    (workdir / '.nets-workdir').write_text('{}')
    (workdir / 'config.json').write_text('{"epochs": 1,')  # cut short, as by a full disk
    line = _one_error_line(launch(f'--config={QUICK}', f'--workdir={workdir}', '--resume', expect_success=False))
    assert f'{workdir / "config.json"} is not the JSON a run writes' in line, line
    assert (workdir / 'config.json').read_text() == '{"epochs": 1,'  # the user's file is kept as it was


@pytest.mark.reliability
def test_a_busy_workdir_is_refused_at_once(launch, tmp_path):
    workdir = tmp_path / 'busy'
    workdir.mkdir()
    with open(workdir / '.lock', 'a+') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = _one_error_line(launch(f'--config={QUICK}', f'--workdir={workdir}', expect_success=False))
    assert 'in use by another run' in line and str(workdir) in line
    assert sorted(path.name for path in workdir.iterdir()) == ['.lock']


@pytest.mark.reliability
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


@pytest.mark.reliability
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
    launched = json.loads(json.dumps(baseline.get_config('quick').to_dict()))
    assert json.loads((workdir / 'config.json').read_text()) == launched  # what --resume must match
    # results.json: what ran, the split and batch order drawn from the first seed (0) where the config left them unset
    assert launched['split_seed'] is None and launched['data_seed'] is None
    assert results['config'] == launched | {'split_seed': 0, 'data_seed': 0}


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
    state, _ = _final_state(workdir, runner.initial_state(task, hparams, [{'seed': 0}], (784,)))  # one member, stacked
    assert list(state.batch_stats) == ['batch_norm_0']  # the net that trained had batch norm
    assert float(state.hparams['model.negative_slope'][0]) == pytest.approx(0.2)
    adam = [s for s in jax.tree.leaves(state.opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]  # fmt: skip
    assert len(adam) == 1  # the run was Adam's, not the config file's RMSprop


def _final_state(workdir, like_state):
    saver = checkpoint.Checkpointer(str(workdir / 'checkpoints' / 'baseline'))
    try:
        return saver.restore(like_state)
    finally:
        saver.close()


@pytest.mark.reliability
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


@pytest.mark.reliability
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
    launcher.remove_traces(refused, before=set(), own_checkpoints=True)
    launcher.check_workdir(refused, resume=False)  # a plain rerun may start
    assert os.listdir(refused) == []
    crashed = workdir('crashed')
    launcher.remove_traces(crashed, before=set())
    assert launcher.saved_checkpoints(crashed) == ['dense/3']
    finished = workdir('finished', results=True)
    launcher.remove_traces(finished, before=set(), own_checkpoints=True)
    assert launcher.saved_checkpoints(finished) == ['dense/3']


def _users_files(workdir):
    """Issue 25's directory: a user's config.json, TensorBoard events and a checkpoint of another tool."""
    (workdir / 'tensorboard' / 'myexp').mkdir(parents=True)
    (workdir / 'checkpoints' / 'old_model').mkdir(parents=True)
    files = {'config.json': '{"mine": 1}', 'tensorboard/myexp/events.out': 'events', 'checkpoints/old_model/w.bin': 'w'}
    for name, text in files.items():
        (workdir / name).write_text(text)
    return files


@pytest.mark.reliability
@pytest.mark.parametrize('flags', [['--config.epochs=0'], []], ids=['failing', 'succeeding'])
def test_a_directory_that_no_run_made_is_refused_untouched(launch, tmp_path, flags):
    """Issue 25, items 1 and 2: a failing run used to delete the user's files, a succeeding one overwrote them."""
    workdir = tmp_path / 'users'
    files = _users_files(workdir)
    line = _one_error_line(launch(f'--config={QUICK}', f'--workdir={workdir}', *flags, expect_success=False))
    assert 'no run of this project made' in line and 'config.json' in line
    assert {str(p.relative_to(workdir)) for p in workdir.rglob('*') if p.is_file()} == set(files)
    assert all((workdir / name).read_text() == text for name, text in files.items())


@pytest.mark.reliability
def test_a_failed_run_in_an_empty_directory_removes_exactly_what_it_made(launch, tmp_path):
    workdir = tmp_path / 'empty'
    workdir.mkdir()
    _one_error_line(launch(f'--config={QUICK}', f'--workdir={workdir}', '--config.epochs=0', expect_success=False))
    assert workdir.is_dir() and list(workdir.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs, filled to 0.4 MiB free: a disk that holds the run's first files but not its first checkpoint.
    Mounting needs root (as on this project's machines and CI); elsewhere the test is skipped."""
    mount = tmp_path / 'disk'
    mount.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(mount)], capture_output=True).returncode:
        pytest.skip('cannot mount a small tmpfs here (needs root)')
    try:
        (mount / 'filler').write_bytes(b'\0' * (3 * 2**20 - 400 * 2**10))
        yield mount
    finally:
        subprocess.run(['umount', str(mount)], check=True)


@pytest.mark.reliability
def test_a_full_disk_ends_with_one_line_naming_the_path_and_the_space(launch, small_disk):
    """It once ended with 144-217 lines of orbax, asyncio and tensorboardX tracebacks before its line."""
    workdir = small_disk / 'run'
    result = launch(f'--config={QUICK}', f'--workdir={workdir}', expect_success=False)
    line = _one_error_line(result)
    assert result.stderr.strip() == line.strip(), result.stderr[-3000:]
    assert 'No space left on device' in line and str(workdir / 'checkpoints' / 'baseline') in line, line
    assert re.search(r'needs about [0-9.]+ MiB; 0\.[0-9] MiB free', line), line
    assert sorted(path.name for path in small_disk.iterdir()) == ['filler']  # what the run made is gone


@pytest.mark.reliability
@pytest.mark.parametrize('number', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_launch_py_imports_its_libraries_ends_it_with_one_line(number, tmp_path):
    """A stop before main() installs its epoch-end handler (here 1 s in, while jax and the rest import) once killed
    the process by SIGTERM's default action (-15, no line) or a KeyboardInterrupt traceback."""
    command = [sys.executable, 'launch.py', f'--config={QUICK}', f'--workdir={tmp_path / "run"}']
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    process.send_signal(number)
    _, stderr = process.communicate(timeout=60)
    lines = stderr.strip().splitlines()
    assert process.returncode == 128 + number, stderr[-3000:]
    assert 'Traceback' not in stderr and f'launch.py: stopped by {number.name}' in lines[-1], stderr[-3000:]
