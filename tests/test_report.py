"""Run outputs: per-member histories and statistics, history.csv, markdown, the standard write_run files, progress
lines and TensorBoard rows, checked against hand-built runs (with members that stopped early) and numbers by hand."""

import csv
import json
import math
import os
import struct
import subprocess

import pytest

from nets import experiment, report, results as results_lib

NAN = float('nan')


def row(epoch, train_loss, train_accuracy, val_loss, val_accuracy, seconds=0.5, compile_seconds=0.0):
    return {
        'epoch': epoch,
        'train_loss': train_loss,
        'train_accuracy': train_accuracy,
        'val_loss': val_loss,
        'val_accuracy': val_accuracy,
        'seconds': seconds,
        'compile_seconds': compile_seconds,
    }


def stopped_row(epoch):
    """A row of a member that had stopped early: its metrics are NaN, the shared timings are not."""
    return row(epoch, NAN, NAN, NAN, NAN)


def make_runs():
    """Two variants; member 'seed=1,...' of 'sgd' stopped after two of three epochs."""
    return {
        'sgd': {
            'seed=0,optimizer.learning_rate=0.1': {
                'seed': 0,
                'hparams': {'optimizer.learning_rate': 0.1},
                'history': [
                    row(1, 1.0, 0.5, 0.9, 0.6, compile_seconds=2.0),
                    row(2, 0.8, 0.6, 0.7, 0.7),
                    row(3, 0.6, 0.7, 0.8, 0.65),
                ],
                'test': {'accuracy': 0.7, 'loss': 0.75},
            },
            'seed=1,optimizer.learning_rate=0.1': {
                'seed': 1,
                'hparams': {'optimizer.learning_rate': 0.1},
                'history': [
                    row(1, 1.2, 0.4, 1.1, 0.5, compile_seconds=2.0),
                    row(2, 1.0, 0.5, 1.0, 0.55),
                    stopped_row(3),
                ],
                'test': {'accuracy': 0.5, 'loss': 1.05},
            },
        },
        'adam': {
            'seed=0': {
                'seed': 0,
                'hparams': {},
                'history': [row(1, 0.5, 0.8, 0.45, 0.85, compile_seconds=1.0), row(2, 0.3, 0.9, 0.4, 0.9)],
                'test': {'accuracy': 0.9, 'loss': 0.4},
            },
        },
    }


def read_scalars(run_dir):
    """{tag: [(step, value), ...]} from the TensorBoard event files of one run folder."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        EventAccumulator = None
    if EventAccumulator is not None:
        accumulator = EventAccumulator(run_dir)
        accumulator.Reload()
        return {
            tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()['scalars']
        }
    # TFRecord framing: uint64 length, uint32 crc of the length, the serialized Event, uint32 crc of the data.
    from tensorboardX.proto import event_pb2

    scalars = {}
    for name in sorted(os.listdir(run_dir)):
        if 'tfevents' not in name:
            continue
        with open(os.path.join(run_dir, name), 'rb') as f:
            content = f.read()
        offset = 0
        while offset < len(content):
            (length,) = struct.unpack('<Q', content[offset : offset + 8])
            event = event_pb2.Event.FromString(content[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def strict_json(text):
    """json.loads that refuses NaN and Infinity, which are not JSON."""

    def refuse(constant):
        raise ValueError(f'not JSON: {constant}')

    return json.loads(text, parse_constant=refuse)


def test_member_history_picks_one_member_and_keeps_shared_values():
    history = [
        {
            'epoch': 1,
            'train_loss': [1.0, 2.0, 3.0],
            'stopped': [False, False, True],
            'seconds': 0.5,
            'compile_seconds': 1.5,
        },
        {
            'epoch': 2,
            'train_loss': [0.5, 1.5, NAN],
            'stopped': [False, True, True],
            'seconds': 0.25,
            'compile_seconds': 0.0,
        },
    ]
    assert results_lib.member_history(history, 1) == [
        {'epoch': 1, 'train_loss': 2.0, 'stopped': False, 'seconds': 0.5, 'compile_seconds': 1.5},
        {'epoch': 2, 'train_loss': 1.5, 'stopped': True, 'seconds': 0.25, 'compile_seconds': 0.0},
    ]
    assert results_lib.member_history(history, 0)[1]['train_loss'] == 0.5
    assert math.isnan(results_lib.member_history(history, 2)[1]['train_loss'])
    assert history[0]['train_loss'] == [1.0, 2.0, 3.0]  # the input is left alone


def test_member_statistics_of_a_member_that_stopped_early():
    """Test values, the last trained epoch's train metrics, best val metrics; the stopped (NaN) rows are ignored."""
    run = {
        'seed': 3,
        'hparams': {},
        'history': [
            row(1, 1.0, 0.50, 0.90, 0.60),
            row(2, 0.8, 0.60, 0.70, 0.75),
            row(3, 0.6, 0.70, 0.65, 0.70),
            stopped_row(4),
            stopped_row(5),
        ],
        'test': {'accuracy': 0.72, 'loss': 0.66},
    }
    statistics = results_lib.member_statistics(run)
    assert statistics == {
        'test_accuracy': 0.72,
        'test_loss': 0.66,
        'epochs': 3.0,
        'final_train_loss': 0.6,
        'final_train_accuracy': 0.7,
        'best_val_loss': 0.65,
        'best_val_accuracy': 0.75,
        'best_epoch': 3.0,
    }  # the epoch of the lowest val_loss, the first val metric


def test_best_epoch_follows_the_first_validation_metric_and_its_direction():
    """With val_accuracy first, best_epoch is the epoch of its maximum (not of val_loss's minimum)."""
    rows = [
        {'epoch': e, 'train_loss': t, 'val_accuracy': a, 'val_loss': v}
        for e, t, a, v in [(1, 1.0, 0.5, 0.9), (2, 0.9, 0.8, 0.7), (3, 0.8, 0.7, 0.6)]
    ]
    statistics = results_lib.member_statistics({'history': rows, 'test': {}})
    assert statistics['best_epoch'] == 2.0
    assert statistics['best_val_accuracy'] == 0.8 and statistics['best_val_loss'] == 0.6
    assert statistics['final_train_loss'] == 0.8 and statistics['epochs'] == 3.0


def test_member_statistics_without_a_trained_epoch_has_only_test_values():
    run = {'history': [stopped_row(1)], 'test': {'accuracy': 0.1}}
    assert results_lib.member_statistics(run) == {'test_accuracy': 0.1}


def test_variant_statistics_are_mean_min_and_max_over_members():
    statistics = results_lib.variant_statistics(make_runs())
    assert set(statistics) == {'sgd', 'adam'}
    sgd = statistics['sgd']
    assert sgd['test_accuracy'] == pytest.approx({'mean': 0.6, 'min': 0.5, 'max': 0.7})
    assert sgd['epochs'] == pytest.approx({'mean': 2.5, 'min': 2.0, 'max': 3.0})
    # Member 0 ends at 0.6 (epoch 3), member 1 at 1.0 (epoch 2, its last trained one).
    assert sgd['final_train_loss'] == pytest.approx({'mean': 0.8, 'min': 0.6, 'max': 1.0})
    assert sgd['best_val_loss'] == pytest.approx({'mean': 0.85, 'min': 0.7, 'max': 1.0})
    assert sgd['best_val_accuracy'] == pytest.approx({'mean': 0.625, 'min': 0.55, 'max': 0.7})
    assert sgd['best_epoch'] == pytest.approx({'mean': 2.0, 'min': 2.0, 'max': 2.0})
    adam = statistics['adam']
    assert adam['test_loss'] == pytest.approx({'mean': 0.4, 'min': 0.4, 'max': 0.4})
    assert adam['best_val_accuracy'] == pytest.approx({'mean': 0.9, 'min': 0.9, 'max': 0.9})


def test_history_csv_has_one_row_per_variant_member_and_epoch(tmp_path):
    runs = make_runs()
    path = report.write_history_csv(str(tmp_path), runs)
    assert path == str(tmp_path / 'history.csv')
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    assert header == [
        'variant',
        'member',
        'seed',
        'optimizer.learning_rate',
        'epoch',
        'train_loss',
        'train_accuracy',
        'val_loss',
        'val_accuracy',
        'seconds',
        'compile_seconds',
    ]
    expected = [
        (variant, label, run, history_row)
        for variant, by_member in runs.items()
        for label, run in by_member.items()
        for history_row in run['history']
    ]
    assert len(rows) == len(expected) == 8
    for got, (variant, label, run, history_row) in zip(rows, expected):
        assert (got['variant'], got['member'], int(got['seed'])) == (variant, label, run['seed'])
        swept = run['hparams'].get('optimizer.learning_rate')
        assert got['optimizer.learning_rate'] == ('' if swept is None else str(swept))
        assert int(got['epoch']) == history_row['epoch']
        for key in ('train_loss', 'train_accuracy', 'val_loss', 'val_accuracy', 'seconds', 'compile_seconds'):
            value = float(got[key])
            assert (math.isnan(value) and math.isnan(history_row[key])) or value == history_row[key], key


def test_markdown_table_gives_floats_four_decimals_and_leaves_the_rest():
    table = report.markdown_table(['name', 'count', 'value'], [['a', 3, 0.5], ['b', 12, 1 / 3], ['c', 0, 'n/a']])
    assert table == (
        '| name | count | value |\n|---|---|---|\n| a | 3 | 0.5000 |\n| b | 12 | 0.3333 |\n| c | 0 | n/a |'
    )
    # Below 0.001 a float keeps three significant digits instead of rounding to 0.0000; zero stays 0.0000.
    table = report.markdown_table(['value'], [[1e-5], [-3.14159e-4], [0.0], [0.001]])
    assert table.splitlines()[2:] == ['| 1e-05 |', '| -0.000314 |', '| 0.0000 |', '| 0.0010 |']


def test_write_report_writes_the_title_then_the_sections(tmp_path):
    path = report.write_report(str(tmp_path), 'My run', ['## First', 'some text', '| a |\n|---|'])
    assert path == str(tmp_path / 'report.md')
    assert open(path).read() == '# My run\n\n## First\n\nsome text\n\n| a |\n|---|\n'


def test_write_run_writes_results_history_report_and_curves(tmp_path):
    """results.json is strict JSON with every key (a stopped member's NaN as null), report.md has the tables."""
    runs = make_runs()
    claim = results_lib.claim('rate helps', 'test_accuracy', ['a', 'b'], {0: 0.90, 1: 0.91, 2: 0.92}, 0.8)
    choice = experiment.choose('rate', {0.1: 0.9, 0.3: 0.8}, metric='val_accuracy')
    statistics = report.write_run(
        str(tmp_path),
        'Sweep',
        summary={'headline_accuracy': 0.91},
        config={'epochs': 3, 'batch_size': 64},
        runs=runs,
        sections=['Intro prose.'],
        figures=[str(tmp_path / 'error_vs_kept.png')],
        claims=[claim],
        records={'choices': [choice]},
    )
    assert statistics == results_lib.variant_statistics(runs)
    results = strict_json((tmp_path / 'results.json').read_text())
    assert list(results) == [
        *('summary', 'config', 'seeds', 'versions', 'diverged', 'runs', 'statistics', 'claims', 'choices')
    ]
    assert results['claims'] == [claim]
    report_md = (tmp_path / 'report.md').read_text()
    assert '## Claims' in report_md and '| rate helps | test_accuracy: a − 0.8 (b) > 0 | +0.1100 |' in report_md
    assert '95% t: [' in report_md and '| 3 | **supported** |' in report_md
    assert results['choices'] == [choice]
    assert '## Choices (never on test)' in report_md and '| rate | 0.1000 | max val_accuracy | 2 |  |' in report_md
    assert results['diverged'] == {}
    assert results['summary'] == {'headline_accuracy': 0.91}
    assert results['config'] == {'epochs': 3, 'batch_size': 64}
    assert results['seeds'] == [0, 1]
    assert {'jax', 'flax', 'optax', 'backend'} <= set(results['versions'])
    # The CPU that timed it, and how busy the machine was: three load averages.
    assert f'{os.cpu_count()} cores, AVX-512: ' in results['versions']['cpu']
    assert len([float(value) for value in results['versions']['load_average'].split()]) == 3
    assert results['statistics'] == statistics
    assert results['runs']['adam']['seed=0'] == runs['adam']['seed=0']
    stopped = results['runs']['sgd']['seed=1,optimizer.learning_rate=0.1']['history'][2]
    assert stopped['epoch'] == 3 and stopped['train_loss'] is None and stopped['val_accuracy'] is None
    assert list(results['runs']['sgd']) == list(runs['sgd'])

    with open(tmp_path / 'history.csv', newline='') as f:
        assert len(list(csv.DictReader(f))) == 8
    png = (tmp_path / 'curves.png').read_bytes()
    assert png.startswith(b'\x89PNG') and len(png) > 1000

    text = (tmp_path / 'report.md').read_text()
    assert text.startswith(
        '# Sweep\n\nIntro prose.\n\n## Summary\n\n| metric | value |\n|---|---|\n| headline_accuracy | 0.9100 |\n'
    )
    assert '![curves](curves.png)' in text and text.rstrip().endswith('![error_vs_kept](error_vs_kept.png)')
    members = text.split('## Members')[1].split('\n\n')[1].splitlines()
    assert members[0].startswith('| variant | member | test_accuracy | test_loss |') and 'epochs' not in members[0]
    assert [line.split(' | ')[:2] for line in members[2:]] == [
        ['| sgd', 'seed=0,optimizer.learning_rate=0.1'],
        ['| sgd', 'seed=1,optimizer.learning_rate=0.1'],
        ['| adam', 'seed=0'],
    ]
    assert '| sgd | seed=1,optimizer.learning_rate=0.1 | 0.5000 | 1.0500 |' in text
    variants = text.split('## Variants')[1].split('\n\n')[1].splitlines()
    assert variants[2].startswith('| sgd | 2 | 0.6000 (0.5000–0.7000) |')
    assert variants[3].startswith('| adam | 1 | 0.9000 |')


def test_epoch_line_shows_member_means_ignoring_stopped_members():
    row_ = {
        'epoch': 3,
        'train_loss': [0.5, NAN, 0.7],
        'val_accuracy': [0.8, NAN, 0.9],
        'stopped': [False, True, False],
        'seconds': 1.234,
        'compile_seconds': 0.0,
    }
    assert report.epoch_line('sgd', row_) == 'sgd epoch   3  train_loss 0.6000  val_accuracy 0.8500  1.23s'
    assert report.epoch_line('sgd', row_ | {'compile_seconds': 2.5}).endswith('1.23s  (compile 2.50s)')
    single = {'epoch': 12, 'train_loss': 0.25, 'seconds': 0.5, 'compile_seconds': 0.0}
    assert report.epoch_line('adam', single) == 'adam epoch  12  train_loss 0.2500  0.50s'


def test_tensorboard_writes_one_run_folder_per_member_and_leaves_out_nan(tmp_path):
    labels = ['seed=0', 'seed=1']
    board = report.TensorBoard(str(tmp_path), 'sgd', labels)
    board.write(
        {
            'epoch': 1,
            'train_loss': [0.9, 0.8],
            'val_accuracy': [0.5, 0.6],
            'stopped': [False, False],
            'seconds': 0.5,
            'compile_seconds': 1.5,
        }
    )
    board.write(
        {
            'epoch': 2,
            'train_loss': [0.7, NAN],
            'val_accuracy': [0.55, NAN],
            'stopped': [False, True],
            'seconds': 0.25,
            'compile_seconds': 0.0,
        }
    )
    board.close()
    assert sorted(os.listdir(tmp_path / 'sgd')) == labels
    first = read_scalars(str(tmp_path / 'sgd' / 'seed=0'))
    second = read_scalars(str(tmp_path / 'sgd' / 'seed=1'))
    approx = lambda pairs: [(step, pytest.approx(value, rel=1e-6)) for step, value in pairs]
    assert set(first) == set(second) == {'train_loss', 'val_accuracy', 'seconds', 'compile_seconds'}
    assert first['train_loss'] == approx([(1, 0.9), (2, 0.7)])
    assert first['val_accuracy'] == approx([(1, 0.5), (2, 0.55)])
    assert first['seconds'] == second['seconds'] == approx([(1, 0.5), (2, 0.25)])
    assert first['compile_seconds'] == approx([(1, 1.5), (2, 0.0)])
    # The stopped member's NaN of epoch 2 is not written.
    assert second['train_loss'] == approx([(1, 0.8)])
    assert second['val_accuracy'] == approx([(1, 0.6)])


def test_git_revision_counts_code_changes_as_dirty_but_not_a_runs_own_results(tmp_path):
    """A run writing into results/ of its own checkout does not make the code it ran 'dirty'; a code change does."""
    git = lambda *args: subprocess.run(['git', '-C', str(tmp_path), *args], check=True, capture_output=True)
    git('init', '-q')
    (tmp_path / 'results').mkdir()
    (tmp_path / 'code.py').write_text('x = 1\n')
    (tmp_path / 'results' / 'results.json').write_text('{}\n')
    git('add', '.')
    git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'start')
    clean = results_lib.git_revision(str(tmp_path))
    assert len(clean['git_commit']) == 40 and clean['git_dirty'] == 'false'
    (tmp_path / 'results' / 'results.json').write_text('{"summary": {}}\n')
    assert results_lib.git_revision(str(tmp_path))['git_dirty'] == 'false'
    (tmp_path / 'code.py').write_text('x = 2\n')
    assert results_lib.git_revision(str(tmp_path))['git_dirty'] == 'true'
