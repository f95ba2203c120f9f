"""The experiment protocol: an experiment says what it compares, and this room runs it the same way for all.

An experiment module gives
    get_config(arg)   its config; `:quick` a seconds-scale version
    stages(run)       what it trains, in order: `run.variant(...)` trains a variant of the base task (its changes,
                      the values its members sweep, its epochs, data and hooks), and `run.select(...)` chooses
                      among results by a validation (or training) metric; a later stage reads the earlier choice
    summarize(run, staged)  its headline numbers, its own report sections and figures, as a `Report`, from the
                      run and what stages returned
and may give DEVELOPMENT, its lab history (how the development seeds shaped the config), which the report prints.
and `run(module, config, workdir, ...)` does the rest once for all: it loads each split once, builds the tasks,
trains every variant with checkpoints (so that `--resume` continues across stages: a finished variant restores
from its last checkpoint), records every choice in results.json under `choices`, evaluates every variant on the
test split once, after the last stage (a stage sees no test metric), and writes the standard report with the wall
time summed over every resumed segment.

Honesty is structural: `select` refuses a test metric, and the sealed-test check (tests/experiments) runs every
experiment twice, the second time with the test labels permuted, and demands the same choices and the same
training and validation curves.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from typing import Any, Callable, Mapping, Sequence

import ml_collections
import numpy as np

from nets import data as data_lib, diagnostics, report, results, runner, tasks, train
from nets.registry import lookup

RULES = {'max': max, 'min': min}
SEGMENTS = 'segments.json'  # the wall time of each segment (first run and every --resume) of a workdir's run
SEGMENT_EVERY = 30.0  # seconds between a segment's writes of its time at epoch ends


def base_config(*, seeds: Sequence[int] = (0, 1, 2), **fields: Any) -> ml_collections.ConfigDict:
    """A config with the fields every experiment shares, then `fields` (which may override them): the dataset and
    its split (validation_size images of the training split held out, chosen by split_seed; train_limit and
    test_limit, unset, take the first images), the seeds (members), the batch order (data_seed, shuffle 'shared'
    or 'per_member'), the development seeds and checkpoint_every (epochs). split_seed and data_seed, unset, are
    drawn from the seeds (see `drawn_from_the_seeds`)."""
    config = ml_collections.ConfigDict()
    config.dataset = 'mnist'
    config.validation_size = 10_000
    config.split_seed = ml_collections.FieldReference(None, field_type=int)
    config.train_limit = ml_collections.FieldReference(None, field_type=int)
    config.test_limit = ml_collections.FieldReference(None, field_type=int)
    config.seeds = tuple(seeds)
    # The seeds the recipe was developed on (its grids, targets and verdicts fixed by looking at them); `seeds`, the
    # confirmation run's, may not reuse one.
    config.development_seeds = ()
    config.data_seed = ml_collections.FieldReference(None, field_type=int)
    config.shuffle = 'shared'
    config.checkpoint_every = 1
    config.update(fields)
    return config


def drawn_from_the_seeds(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` whose unset split_seed and data_seed are its first seed: a confirmation run on fresh seeds
    holds out its own validation split and orders its batches its own way, not the development's (whose first seed,
    0, gives split 0 and order 0). The copy is what the run uses and what results.json records."""
    drawn = copy.deepcopy(config)
    for field in ('split_seed', 'data_seed'):
        if field in drawn and drawn[field] is None:
            drawn[field] = drawn.seeds[0]
    return drawn


def is_quick(arg: str | None, name: str) -> bool:
    """Whether experiment `name`'s config argument asks for its seconds-scale `:quick` version ('quick') or the
    full one (none); any other argument is refused."""
    return arg not in (None, '') and lookup({'quick': True}, arg, f'{name} config argument')


def smoke(config: ml_collections.ConfigDict, **fields: Any) -> ml_collections.ConfigDict:
    """`config` made a seconds-scale :quick run: seeds 0 and 1 and no development seeds (a smoke run confirms
    nothing), 1,200 training images of which 500 validate, 500 test images, 2 epochs, claims (config.final_epochs)
    on the last; then `fields`."""
    smallest = dict(validation_size=500, train_limit=1200, test_limit=500, seeds=(0, 1), development_seeds=(), epochs=2)
    last = {'final_epochs': 1} if 'final_epochs' in config else {}
    for name, value in {**smallest, **last, **fields}.items():
        config[name] = value
    return config


def _refuse_test(metric: str) -> None:
    if 'test' in metric.split('_'):
        raise ValueError(f'select: {metric!r} is a test metric; choose by a validation or training metric')


def select(values: Mapping[Any, Any], *, metric: str, rule: str = 'max') -> Any:
    """The candidate whose value of `metric` is largest ('max') or smallest ('min'); a value may be a tuple
    (compared in order: a tie-break); NaN loses (a diverged candidate is never chosen); ties go to the first.
    Refuses a test metric."""
    _refuse_test(metric)
    return RULES[rule](values, key=_scorer(values, rule))


def _scorer(values: Mapping[Any, Any], rule: str) -> Callable[[Any], tuple]:
    """A candidate's value as `select` compares it: a tuple of floats, NaN (or None) the worst."""
    worst = -np.inf if rule == 'max' else np.inf
    finite = lambda value: worst if value is None else float(np.nan_to_num(value, nan=worst))
    return lambda candidate: tuple(map(finite, np.atleast_1d(values[candidate])))


def choose(what: str, values: Mapping[Any, Any], *, metric: str, rule: str = 'max', note: str = '') -> dict:
    """`select` among `values`, as one entry of results.json's `choices`: what was chosen (under 'chosen'), among
    what, by which metric and rule, with the values; among three or more numbers, also whether the chosen one is at
    an end of the grid and beats its neighbour there (`at_edge`: the grid may be too narrow, and the protocol
    extends it before a confirmation run). An end that only ties its neighbour (every rate at chance, say) is not
    at an edge: nothing says that the best lies beyond it. Nor is a chosen 0 at the bottom of a grid of strengths
    (a penalty, a decay, a dropout rate): nothing lies below off."""
    chosen = select(values, metric=metric, rule=rule)
    return {
        'choice': what,
        'chosen': chosen,
        'metric': metric,
        'rule': rule,
        'values': [[candidate, value] for candidate, value in values.items()],
        **edge_of_grid(values, chosen, rule),
        **({'note': note} if note else {}),
    }


def edge_of_grid(values: Mapping[Any, Any], chosen: Any, rule: str) -> dict:
    """{'at_edge': ...} of a choice among three or more numbers (see `choose`); {} otherwise."""
    numbers = sorted(value for value in values if isinstance(value, (int, float)) and not isinstance(value, bool))
    if not len(numbers) == len(values) >= 3:
        return {}
    if chosen not in (numbers[0], numbers[-1]) or chosen == 0 == numbers[0]:
        return {'at_edge': False}
    score = _scorer(values, rule)
    return {'at_edge': score(chosen) != score(numbers[1] if chosen == numbers[0] else numbers[-2])}


def member_values(runs: Mapping[str, Mapping], key: Callable[[Mapping], float], by: str | None = None):
    """{candidate: mean over its members of key(run)}: candidates are the values of swept path `by`, or the
    variants when `runs` is {variant: runs}."""
    if by is None:
        return {name: float(np.mean([key(run) for run in members.values()])) for name, members in runs.items()}
    grouped: dict[Any, list] = {}
    for run in runs.values():
        grouped.setdefault(run['hparams'][by], []).append(key(run))
    return {value: float(np.mean(scores)) for value, scores in grouped.items()}


def final(metric: str) -> Callable[[Mapping], float]:
    """A member's value of history metric `metric` after its last epoch (a key for `choose_swept`)."""
    return lambda run: run['history'][-1][metric]


def choose_swept(what: str, runs: Mapping[str, Mapping], path: str, *, metric: str, rule: str = 'max', key=None):
    """Chooses the value of swept hparam `path` whose members have the best mean `key(run)` (default: the final
    `metric`) by `rule`; returns (the value, its members' runs, the choice's record for results.json)."""
    _refuse_test(metric)
    choice = choose(what, member_values(runs, key or final(metric), by=path), metric=metric, rule=rule, note=path)
    kept = {label: run for label, run in runs.items() if run['hparams'][path] == choice['chosen']}
    return choice['chosen'], kept, choice


@dataclasses.dataclass
class Report:
    """What an experiment's summarize gives: the headline `summary`, the `sections` (markdown) and `figures`
    (files in the workdir, by path or name) of its report, `claims` (each a `nets.results.claim`: a difference over
    seeds with its interval and verdict) and `records`, its own named blocks in results.json.
    `runs` are the runs the standard tables show (all trained runs unless given); `curves` the history metrics of
    curves.png."""

    title: str
    summary: dict[str, Any]
    sections: Sequence[str] = ()
    figures: Sequence[str] = ()
    claims: Sequence[Mapping[str, Any]] = ()
    records: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    runs: Mapping[str, Any] | None = None
    curves: Sequence[str] | None = None


class Experiment:
    """One run of an experiment: its config, workdir and data, the variants trained so far and the choices made."""

    def __init__(self, config, workdir: str, *, data_dir=None, cache_dir=None, resume: bool = False, segment=None):
        self.config, self.workdir, self.resume = drawn_from_the_seeds(config), workdir, resume
        self.segment = Segment(workdir) if segment is None else segment
        self.data_dir, self.cache_dir = data_dir, cache_dir
        self.runs: dict[str, dict] = {}
        self.states: dict[str, train.TrainState] = {}
        self.choices: list[dict[str, Any]] = []
        self._tests: dict[str, tuple] = {}
        self._host: dict[tuple, data_lib.Splits] = {}
        self._device: dict[tuple, tuple] = {}

    # ---- Data and tasks.

    def _spec(self, changes: Mapping[str, Any]) -> tuple:
        config = self.config
        spec = {
            'validation_size': config.get('validation_size', 10_000),
            'split_seed': config.get('split_seed', 0),
            'train_limit': config.get('train_limit'),
            'test_limit': config.get('test_limit'),
            **changes,
        }
        return tuple(sorted(spec.items()))

    def splits(self, **changes) -> data_lib.Splits:
        """The host splits of the config's dataset (validation_size, split_seed, train_limit, test_limit from the
        config, unless `changes` give others); each distinct split is loaded once."""
        key = self._spec(changes)
        if key not in self._host:
            self._host[key] = data_lib.load_splits(
                self.config.dataset, data_dir=self.data_dir, cache_dir=self.cache_dir, **dict(key)
            )
        return self._host[key]

    def data(self, **changes) -> tuple[train.Data, tuple]:
        """`splits(**changes)` on the device: (train.Data, (test images, test labels))."""
        key = self._spec(changes)
        if key not in self._device:
            self._device[key] = runner.device_data(self.splits(**changes))
        return self._device[key]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return runner.input_shape(self.config.dataset)

    def task(self, changes: Mapping[str, Any] | None = None, **options) -> tuple[train.Task, dict]:
        """The task of the config's task fields with `changes` (whole sections: model, optimizer, ...), and its
        hyper-parameters; `options` go to tasks.build (after_update)."""
        return tasks.build({**self.config.to_dict(), **dict(changes or {})}, self.input_shape, **options)

    # ---- Training and choosing.

    def variant(
        self,
        name: str,
        task: tuple[train.Task, dict] | None = None,
        *,
        changes: Mapping[str, Any] | None = None,
        members: Sequence[Mapping[str, Any]] | None = None,
        sweep: Mapping[str, Sequence[float]] | None = None,
        seeds: Sequence[int] | None = None,
        data: tuple[train.Data, tuple] | None = None,
        epochs: int | None = None,
        on_epoch_end=None,
        prepare_state=None,
        after_update=None,
        test_curve: bool = False,
    ) -> tuple[train.TrainState, dict]:
        """Trains variant `name`: `task` (a built task and hparams), or the base task with `changes`; its members
        are `members`, or the config's seeds (or `seeds`) times the `sweep`; on `data` (default: the config's
        splits); for `epochs` (default config.epochs); with `test_curve`, the test metrics after every epoch too
        (test_<metric> in each history row, before `on_epoch_end` runs: curves that choose nothing). Returns the
        final state and the runs by member label."""
        if task is None:
            task = self.task(changes, after_update=after_update)
        if members is None:
            members = runner.grid(self.config.seeds if seeds is None else seeds, sweep)
        data, test = data if data is not None else self.data()
        if test_curve:
            on_epoch_end = runner.chain(runner.evaluation_hook(task[0], *test, members=True), on_epoch_end)
        state, runs = runner.run_variant(
            self.workdir,
            self.config,
            name,
            *task,
            members,
            data,
            None,  # the test metrics wait until every stage has run (evaluate_test)
            resume=self.resume,
            epochs=epochs,
            on_epoch_end=runner.chain(on_epoch_end, self.segment.epoch_end),  # the run's time so far
            prepare_state=prepare_state,
        )
        self.runs[name], self.states[name] = runs, state
        if test is not None:
            self._tests[name] = (task[0], test)
        return state, runs

    def evaluate_test(self) -> None:
        """Every variant's final test metrics (each run's 'test'), computed once after all stages and choices, so
        that no stage can read them."""
        for name, (task, test) in self._tests.items():
            metrics = train.evaluate_members(task, self.states[name], *test, members=True)
            for index, run in enumerate(self.runs[name].values()):
                run['test'] = results.member_entries(metrics, index)

    def probed_variant(self, name: str, task, probe, *, sweep=None, **options) -> tuple[dict, dict]:
        """`variant` with the test metrics after every epoch (curves that choose nothing) and the diagnostics on
        `probe` at init, after every epoch and of the final weights (each run's 'final_diagnostics'); returns the
        runs and the diagnostics at init."""
        members = runner.grid(self.config.seeds, sweep)
        data, test = options.get('data') or self.data()
        measure = diagnostics.prober(task[0], *probe, members=True)
        at_init = measure(runner.initial_state(*task, members, data.train_images.shape[1:]))
        hook = diagnostics.epoch_hook(measure)
        state, runs = self.variant(name, task, members=members, on_epoch_end=hook, test_curve=True, **options)
        final = measure(state)  # of the final (restored, early-stopped) weights, also after a resume
        for index, member in enumerate(runs.values()):
            member['final_diagnostics'] = results.member_entries(final, index)
        return runs, at_init

    def wall_seconds(self) -> float:
        """The run's wall time so far, over every resumed segment."""
        return self.segment.total()

    def tuned_variant(self, name: str, changes: Mapping[str, Any], path: str, values: Sequence[Any], **options):
        """Variant `name` (the base task with `changes`) with `values` of hparam `path` as members, times the seeds,
        the test curve drawn; the value chosen on validation by the mean over the seeds of the validation accuracy
        averaged over the last config.final_epochs epochs. Returns the chosen value's runs: each variant at its own
        best setting, a matched budget."""
        _, runs = self.variant(name, changes=changes, sweep={path: values}, test_curve=True, **options)
        score = results.mean_of_last('val_accuracy', self.config.final_epochs)
        return self.select_swept(name, runs, path, metric='val_accuracy', key=score)[1]

    def select_swept(self, what: str, runs: Mapping[str, Mapping], path: str, *, metric: str, rule='max', key=None):
        """`choose_swept`, recorded among the run's choices; returns (the chosen value, its members' runs)."""
        value, kept, choice = choose_swept(what, runs, path, metric=metric, rule=rule, key=key)
        self.choices.append(choice)
        return value, kept

    def select(self, what: str, values: Mapping[Any, float], *, metric: str, rule: str = 'max', note: str = ''):
        """Chooses among `values` ({candidate: score}) by `rule` (see `select`), records the choice under `what`
        with every candidate's score, and returns the chosen candidate."""
        self.choices.append(choose(what, values, metric=metric, rule=rule, note=note))
        return self.choices[-1]['chosen']


class Segment:
    """This segment of a workdir's run (the first run, or a --resume): its wall time is written into segments.json
    at a variant's epoch ends (at most every SEGMENT_EVERY seconds: a write costs ~10 ms, a :quick epoch less) and
    when it ends, also by an exception, so that a run stopped without warning (SIGKILL, the end of a machine's
    session) loses at most that much, or an epoch, from the run's total."""

    def __init__(self, workdir: str):
        self.workdir, self.started, self.written = workdir, time.perf_counter(), -np.inf
        path = os.path.join(workdir, SEGMENTS)
        self.earlier = []
        if os.path.exists(path):
            with open(path) as file:
                self.earlier = json.load(file)

    def total(self) -> float:
        """The run's wall time so far: every earlier segment's and this one's."""
        return float(sum(self.earlier)) + time.perf_counter() - self.started

    def record(self) -> None:
        """Writes this segment's seconds so far after the earlier ones."""
        self.written = time.perf_counter()
        if os.path.isdir(self.workdir):
            results.write_json(os.path.join(self.workdir, SEGMENTS), [*self.earlier, self.written - self.started])

    def epoch_end(self, *_) -> None:
        """An epoch hook (it returns nothing): `record`, unless it did less than SEGMENT_EVERY seconds ago."""
        if time.perf_counter() - self.written >= SEGMENT_EVERY:
            self.record()


def run(module, config, workdir: str, *, data_dir=None, cache_dir=None, resume: bool = False) -> dict:
    """Runs an experiment module's stages, then its summarize, and writes the standard report; returns the summary.
    A module with its own `run(config, workdir, ...)` (one not yet declared as stages) runs that instead. Either
    way the segment's wall time is recorded in the workdir, so that a --resume reports the run's total."""
    segment = Segment(workdir)
    results.pin_revision()
    options = dict(data_dir=data_dir, cache_dir=cache_dir, resume=resume)
    try:
        if not hasattr(module, 'stages'):
            return module.run(config, workdir, **options)
        return _run_stages(module, config, workdir, segment, **options)
    finally:
        segment.record()


def _development(module) -> list[str]:
    """The report's section on a module's `DEVELOPMENT`, its lab history: how the development seeds shaped the
    config (a grid widened, a target fixed), kept out of the config itself."""
    history = getattr(module, 'DEVELOPMENT', '')
    return [f'## Development\n\n{history}'] if history else []


def _run_stages(module, config, workdir: str, segment: Segment, **options) -> dict:
    experiment = Experiment(config, workdir, segment=segment, **options)
    staged = module.stages(experiment)
    experiment.evaluate_test()
    result = module.summarize(experiment, staged)
    summary = dict(result.summary)
    if 'wall_seconds' in summary:
        summary['wall_seconds'] = segment.total()
    report.write_run(
        workdir,
        result.title,
        summary=summary,
        config=experiment.config.to_dict(),
        runs=experiment.runs if result.runs is None else result.runs,
        curves=result.curves,
        sections=[*result.sections, *_development(module)],
        figures=result.figures,
        claims=result.claims,
        records={'choices': experiment.choices, **dict(result.records)},
    )
    return summary
