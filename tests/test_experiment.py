"""The protocol's pieces by hand: select's rule, its refusal of test metrics, NaN and ties; member_values; the wall
time summed over resumed segments; test metrics only after the stages; and the lab history in the report."""

import json
import math
import time

import numpy as np
import pytest

from nets import experiment


def test_select_takes_the_largest_or_smallest_and_the_first_of_a_tie():
    values = {'a': 0.2, 'b': 0.9, 'c': 0.9, 'd': 0.1}
    assert experiment.select(values, metric='val_accuracy') == 'b'
    assert experiment.select(values, metric='val_loss', rule='min') == 'd'


def test_select_never_chooses_a_diverged_candidate_and_compares_tuples_in_order():
    assert experiment.select({'a': math.nan, 'b': 0.1}, metric='val_accuracy') == 'b'
    assert experiment.select({'a': math.nan, 'b': 3.0}, metric='val_loss', rule='min') == 'b'
    assert experiment.select({'a': (2, 0.5), 'b': (2, 0.7), 'c': (1, 0.9)}, metric='val_error') == 'b'


@pytest.mark.parametrize('metric', ['test_accuracy', 'test_error', 'best_test_loss', 'test'])
def test_select_refuses_a_test_metric(metric):
    with pytest.raises(ValueError, match=f'{metric!r} is a test metric'):
        experiment.select({'a': 1.0}, metric=metric)


def test_the_run_records_every_choice_with_every_candidates_value(tmp_path):
    run = experiment.Experiment({}, str(tmp_path))
    assert run.select('rate', {0.1: 0.8, 0.3: 0.9}, metric='val_accuracy') == 0.3
    assert run.choices == [
        {'choice': 'rate', 'chosen': 0.3, 'metric': 'val_accuracy', 'rule': 'max', 'values': [[0.1, 0.8], [0.3, 0.9]]}
    ]
    with pytest.raises(ValueError):
        run.select('rate', {0.1: 0.8}, metric='test_accuracy')
    assert len(run.choices) == 1


@pytest.mark.parametrize(
    'values, at_edge',
    [
        ({1e-4: 0.90, 1e-3: 0.95, 1e-2: 0.93}, False),  # an inner value
        ({1e-4: 0.90, 1e-3: 0.91, 1e-2: 0.93}, True),  # the largest
        ({1e-2: 0.99, 1e-3: 0.91, 1e-4: 0.93}, True),  # the largest, listed first
        ({3: 0.90, 1: 0.95, 2: 0.93}, True),  # the smallest, listed in the middle
        ({1e-3: 0.11, 3e-3: 0.11, 1e-2: 0.11}, False),  # the smallest by a tie (every rate at chance): no edge
        ({1e-3: 0.11, 3e-3: 0.11, 1e-2: 0.10}, False),  # the smallest, tied with its neighbour
        ({1e-3: 0.90, 3e-3: 0.93, 1e-2: 0.93}, False),  # the largest ties the middle one, which is chosen first
        ({1e-3: 0.93, 3e-3: 0.93, 1e-2: 0.94}, True),  # the largest, beating its tied neighbours
        ({1e-3: float('nan'), 3e-3: None, 1e-2: 0.5}, True),  # the only finite one, at an end
        ({0.0: 0.95, 1e-5: 0.93, 1e-4: 0.92}, False),  # off, at the bottom of a grid of strengths: a closed end
        ({-1.0: 0.95, 0.0: 0.93, 1.0: 0.92}, True),  # the smallest, below 0
        ({-1.0: 0.90, 0.0: 0.93, 1.0: 0.92}, False),  # 0 inside the grid
    ],
)
def test_a_choice_among_three_or_more_numbers_records_whether_it_is_at_an_end_of_its_grid(values, at_edge):
    assert experiment.choose('rate', values, metric='val_accuracy')['at_edge'] is at_edge


def test_a_choice_among_two_candidates_or_names_says_nothing_of_an_edge_and_the_report_shows_it():
    from nets import report

    two = experiment.choose('rate', {0.1: 0.8, 0.3: 0.9}, metric='val_accuracy')
    names = experiment.choose('schedule', {'a': 0.8, 'b': 0.9, 'c': 0.7}, metric='val_accuracy')
    assert 'at_edge' not in two and 'at_edge' not in names
    edge = experiment.choose('rate', {0.1: 0.8, 0.3: 0.85, 1.0: 0.9}, metric='val_accuracy')
    table = '\n'.join(report.choices_table([two, edge]))
    assert (
        '| rate | 0.3000 | max val_accuracy | 2 |  |' in table
        and '| rate | 1.0000 | max val_accuracy | 3 | **yes** |' in table
    )


def test_member_values_are_means_over_members_by_swept_value_or_by_variant():
    runs = {
        'seed=0,lr=0.1': {'hparams': {'lr': 0.1}, 'score': 1.0},
        'seed=1,lr=0.1': {'hparams': {'lr': 0.1}, 'score': 3.0},
        'seed=0,lr=0.3': {'hparams': {'lr': 0.3}, 'score': 5.0},
    }
    assert experiment.member_values(runs, lambda run: run['score'], by='lr') == {0.1: 2.0, 0.3: 5.0}
    by_variant = {'x': {'s0': {'score': 1.0}, 's1': {'score': 2.0}}, 'y': {'s0': {'score': 4.0}}}
    assert experiment.member_values(by_variant, lambda run: run['score']) == {'x': 1.5, 'y': 4.0}


def test_every_segment_of_a_workdirs_run_counts_in_its_wall_time_also_one_that_failed(tmp_path):
    """A run interrupted after 0.05 s, then resumed: the resumed run reports both segments (issue 22)."""
    workdir = str(tmp_path)

    class Interrupted:
        @staticmethod
        def run(config, workdir, **options):
            time.sleep(0.05)
            raise KeyboardInterrupt

    class Resumed:
        @staticmethod
        def run(config, workdir, **options):
            return {'wall_seconds': experiment.Segment(workdir).total()}

    with pytest.raises(KeyboardInterrupt):
        experiment.run(Interrupted, None, workdir)
    assert 0.05 <= experiment.run(Resumed, None, workdir)['wall_seconds'] < 1.0
    with open(tmp_path / experiment.SEGMENTS) as file:
        assert len(json.load(file)) == 2


def test_a_segment_killed_without_warning_keeps_the_time_it_recorded_at_its_last_epoch_end(tmp_path):
    """SIGKILL (or a machine's session ending) runs no `finally`: the time recorded at the last epoch end stays,
    and the next segment adds to it rather than overwriting it."""
    killed = experiment.Segment(str(tmp_path))
    time.sleep(0.05)
    killed.record()  # an epoch end; then the process dies
    time.sleep(0.05)  # lost: after the last epoch end
    resumed = experiment.Segment(str(tmp_path))
    assert 0.05 <= resumed.total() < 0.1
    resumed.record()
    resumed.record()  # rewritten, not appended
    with open(tmp_path / experiment.SEGMENTS) as file:
        assert len(json.load(file)) == 2


def test_choose_swept_takes_the_best_mean_final_value_never_a_diverged_value_and_records_it():
    rows = lambda *values: [{'val_loss': value} for value in values]
    runs = {
        'seed=0,lr=0.1': {'hparams': {'optimizer.learning_rate': 0.1}, 'history': rows(1.0, 0.01)},
        'seed=1,lr=0.1': {'hparams': {'optimizer.learning_rate': 0.1}, 'history': rows(1.0, math.nan)},  # diverged
        'seed=0,lr=0.3': {'hparams': {'optimizer.learning_rate': 0.3}, 'history': rows(1.0, 0.5)},
        'seed=1,lr=0.3': {'hparams': {'optimizer.learning_rate': 0.3}, 'history': rows(1.0, 0.6)},
    }
    # A NaN mean compares false with everything, so a careless min() would keep whichever value it saw first.
    rate, kept, choice = experiment.choose_swept('lr', runs, 'optimizer.learning_rate', metric='val_loss', rule='min')
    assert rate == 0.3 and set(kept) == {'seed=0,lr=0.3', 'seed=1,lr=0.3'}
    assert choice['chosen'] == 0.3 and choice['metric'] == 'val_loss' and choice['rule'] == 'min'
    assert choice['values'][1] == [0.3, pytest.approx(0.55)] and math.isnan(choice['values'][0][1])
    with pytest.raises(ValueError, match='test metric'):
        experiment.choose_swept('lr', runs, 'optimizer.learning_rate', metric='test_loss', rule='min')


def test_a_stage_sees_no_test_metric_and_summarize_gets_them_for_every_member(tmp_path, data_dir):
    """The test split is evaluated once, after the last stage: a stage cannot read it, whatever it chooses."""
    from types import SimpleNamespace

    from nets import tasks, train

    config = experiment.base_config(seeds=(0, 1), train_limit=256, test_limit=128, validation_size=128)
    model, optimizer = tasks.model_config(hidden_widths=(8,)), tasks.optimizer_config('adam', 1e-3)
    config.update(tasks.task_config(model, optimizer, batch_size=64))
    config.epochs = 1
    seen = {}

    def stages(run):
        _, runs = run.variant('net')
        seen['during'] = [set(member) for member in runs.values()]
        with open(tmp_path / experiment.SEGMENTS) as file:  # written at the variant's epoch end, before any finally
            seen['segments'] = json.load(file)

    def summarize(run, staged):
        seen['after'] = [member['test'] for member in run.runs['net'].values()]
        seen['expected'] = train.evaluate_members(run.task()[0], run.states['net'], *run.data()[1], members=True)
        return experiment.Report('test after stages', {'members': 2})

    history = 'Seeds 0-2 chose 1e-3, the top of the grid, so it goes one step higher.'
    module = SimpleNamespace(stages=stages, summarize=summarize, DEVELOPMENT=history)
    experiment.run(module, config, str(tmp_path), data_dir=data_dir)
    assert seen['during'] and all('test' not in keys for keys in seen['during'])
    assert len(seen['segments']) == 1 and seen['segments'][0] > 0
    assert seen['after'] == [{metric: values[i] for metric, values in seen['expected'].items()} for i in range(2)]
    written = json.loads((tmp_path / 'results.json').read_text())['runs']['net']
    assert [member['test'] for member in written.values()] == seen['after']
    assert f'## Development\n\n{history}' in (tmp_path / 'report.md').read_text()  # the lab history, not the config


def test_an_unset_split_and_batch_order_are_drawn_from_the_runs_first_seed_and_recorded(tmp_path, data_dir):
    """Confirmation seeds 7, 8 hold out split 7 and order batches by 7 (development's seeds from 0 keep split 0);
    a set value stays; results.json records what the run used."""
    from types import SimpleNamespace

    from nets import tasks

    config = experiment.base_config(seeds=(7, 8), train_limit=256, test_limit=64, validation_size=128)
    config.update(tasks.task_config(tasks.model_config(hidden_widths=(8,)), tasks.optimizer_config('sgd', 0.1)))
    config.epochs = 1
    drawn = experiment.drawn_from_the_seeds(config)
    assert (drawn.split_seed, drawn.data_seed) == (7, 7) and config.split_seed is None  # the config is not changed
    set_split = experiment.drawn_from_the_seeds(experiment.base_config(seeds=(7,), split_seed=3, data_seed=0))
    assert (set_split.split_seed, set_split.data_seed) == (3, 0)
    seen = {}

    def stages(run):
        seen['validation'] = run.splits().validation_labels
        run.variant('net')
        run.variant('development', seeds=(3,))  # a development stage's seed is not one of the run's seeds

    summarize = lambda run, staged: experiment.Report('drawn', {})
    experiment.run(SimpleNamespace(stages=stages, summarize=summarize), config, str(tmp_path), data_dir=data_dir)
    written = json.loads((tmp_path / 'results.json').read_text())
    recorded = written['config']
    assert (recorded['split_seed'], recorded['data_seed']) == (7, 7) and written['seeds'] == [7, 8]
    from nets import data

    split_0 = data.load_splits('mnist', data_dir=data_dir, validation_size=128, split_seed=0, train_limit=256)
    split_7 = data.load_splits('mnist', data_dir=data_dir, validation_size=128, split_seed=7, train_limit=256)
    assert np.array_equal(seen['validation'], split_7.validation_labels)
    assert not np.array_equal(split_7.validation_labels, split_0.validation_labels)


def test_results_record_the_commit_a_run_started_from_not_one_committed_while_it_ran(tmp_path, monkeypatch):
    from nets import results

    head = {'git_commit': 'a' * 40, 'git_dirty': 'false'}
    monkeypatch.setattr(results, 'git_revision', lambda root=None: dict(head))
    monkeypatch.setattr(results, '_PINNED', {})  # this process's pin is restored after the test

    class Module:
        @staticmethod
        def run(config, workdir, **options):
            head.update(git_commit='b' * 40, git_dirty='true')  # a commit lands, and the tree changes, mid-run
            results.write_results(workdir, {}, {}, [0], runs={})
            return {}

    experiment.run(Module, None, str(tmp_path))
    written = json.loads((tmp_path / 'results.json').read_text())['versions']
    assert (written['git_commit'], written['git_dirty']) == ('a' * 40, 'false')
