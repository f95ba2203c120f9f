"""Activation functions: sigmoid, tanh, ReLU and leaky ReLU on a deep MLP and on a shallow one.

(1) Deep: 784 → 10×100 → 10, each activation with the init made for it (Glorot for sigmoid and tanh, He for ReLU
    and leaky ReLU), SGD with momentum. Test curves, and the per-layer kernel-gradient norms at init and after
    training: with sigmoid (σ' ≤ 1/4, outputs not centred) the early layers' gradients are orders of magnitude
    smaller than the last layer's.
(2) Dead units: ReLU against leaky ReLU on the deep net with plain SGD at a growing learning rate (the rates are
    members of one vmapped program). A unit is dead when its output is 0 on every probe example; a leaky unit is
    never exactly 0, so we also count the units whose pre-activation is ≤ 0 on every probe example (inactive).
    The headline fractions are read at the highest rate at which no member of either activation diverged.
(3) The lecture says the choice "does not matter much" for shallow nets: the four on 784 → 100 → 10, and the spread
    (max − min) of their mean test accuracies.

Each variant's seeds (and rates) train as one vmapped program; the test set only draws curves. `:quick` is a
seconds-scale version.
"""

from __future__ import annotations

import os
import time

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from nets import data as data_lib, diagnostics, experiment, report, runner, tasks

ACTIVATIONS = ('sigmoid', 'tanh', 'relu', 'leaky_relu')
FITTING_INIT = {'sigmoid': 'glorot_normal', 'tanh': 'glorot_normal', 'relu': 'he_normal', 'leaky_relu': 'he_normal'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    config = ml_collections.ConfigDict()
    config.dataset = 'mnist'
    config.train_limit = ml_collections.FieldReference(None, field_type=int)
    config.test_limit = ml_collections.FieldReference(None, field_type=int)
    config.probe_size = 1000  # training images the diagnostics read
    config.seeds = (0, 1, 2, 3, 4)
    config.data_seed = 0
    config.checkpoint_every = 5
    config.loss = 'softmax_cross_entropy'
    config.penalties = ()
    config.early_stopping = tasks.early_stopping_config()
    config.batch_size = 128
    config.negative_slope = 0.01
    # The dead-unit sweep's highest learning rate is meant to blow some nets up: their divergence is a result, so
    # it is recorded (results.json 'diverged') without failing the run.
    config.allow_divergence = True
    config.deep = dict(
        model=tasks.model_config(hidden_widths=(100,) * 10),
        optimizer=tasks.optimizer_config('momentum', 0.01, momentum=0.9),
        epochs=10,
    )
    config.dead = dict(
        model=tasks.model_config(hidden_widths=(100,) * 10),
        optimizer=tasks.optimizer_config('sgd'),
        learning_rates=(0.1, 0.3, 1.0),  # the members' rates
        epochs=5,
    )
    config.shallow = dict(
        model=tasks.model_config(hidden_widths=(100,)),
        optimizer=tasks.optimizer_config('momentum', 0.01, momentum=0.9),
        epochs=10,
    )
    if arg == 'quick':
        config.train_limit, config.test_limit, config.probe_size, config.seeds = 1024, 500, 256, (0, 1)
        for part in (config.deep, config.dead, config.shallow):
            part.epochs = 2
        config.deep.model.hidden_widths = config.dead.model.hidden_widths = (16,) * 4
        config.shallow.model.hidden_widths = (16,)
    elif arg not in (None, ''):
        raise ValueError(f"unknown activations config argument {arg!r}; allowed: '' or 'quick'")
    return config


def build(config, part: str, activation: str):
    """The task of `part` with `activation` and the init made for it."""
    settings = config[part]
    model = {**settings.model.to_dict(), 'activation': activation, 'kernel_init': FITTING_INIT[activation]}
    if activation == 'leaky_relu':
        model['negative_slope'] = config.negative_slope
    rate = {'learning_rate': settings.learning_rates[0]} if 'learning_rates' in settings else {}  # members replace it
    task_config = {**config.to_dict(), 'model': model, 'optimizer': {**rate, **settings.optimizer.to_dict()}}
    return tasks.build(task_config, runner.input_shape(config.dataset))


def mean_test_accuracy(runs: dict) -> float:
    return float(np.mean([run['test']['accuracy'] for run in runs.values()]))


def _members_at(runs: dict, learning_rate: float) -> list[dict]:
    return [run for run in runs.values() if run['hparams'].get('optimizer.learning_rate') == learning_rate]


def _finite(runs: dict, learning_rate: float) -> bool:
    """Whether no member at this rate diverged (its training loss never turned non-finite)."""
    return not any('diverged_epoch' in run for run in _members_at(runs, learning_rate))


def _unit_fraction(rows: list[dict], key: str) -> float:
    """The fraction over all hidden units (every layer has the same width), mean over the given members."""
    return float(np.mean([np.mean(row[key]) for row in rows]))


def run(config, workdir: str, *, data_dir: str | None = None, cache_dir: str | None = None, resume: bool = False):
    """Trains the three parts; writes the report and figures; returns the summary."""
    started = time.perf_counter()
    splits = data_lib.load_splits(
        config.dataset,
        data_dir=data_dir,
        cache_dir=cache_dir,
        validation_size=0,
        train_limit=config.train_limit,
        test_limit=config.test_limit,
    )
    data, test = runner.device_data(splits)
    probe = (data.train_images[: config.probe_size], data.train_labels[: config.probe_size])
    runs, at_init, summary = {}, {}, {}
    seeds = runner.grid(config.seeds)
    for activation in ACTIVATIONS:
        task, hparams = build(config, 'deep', activation)
        name = f'deep_{activation}'
        _, runs[name], at_init[name] = runner.run_probed_variant(
            workdir, config, name, task, hparams, seeds, data, test, probe, resume=resume, epochs=config.deep.epochs
        )
        summary[f'{activation}_accuracy'] = mean_test_accuracy(runs[name])
    rates = runner.grid(config.seeds, {'optimizer.learning_rate': config.dead.learning_rates})
    for activation in ('relu', 'leaky_relu'):
        task, hparams = build(config, 'dead', activation)
        name = f'dead_{activation}'
        _, runs[name], at_init[name] = runner.run_probed_variant(
            workdir, config, name, task, hparams, rates, data, test, probe, resume=resume, epochs=config.dead.epochs
        )
    # The headline rate: the highest at which no member of either activation diverged (a diverged member is frozen
    # at its weights of the epoch before, which say nothing about units dying under that rate).
    finite = [
        rate
        for rate in config.dead.learning_rates
        if all(_finite(runs[f'dead_{a}'], rate) for a in ('relu', 'leaky_relu'))
    ]
    summary['dead_learning_rate'] = max(finite) if finite else float('nan')
    for activation in ('relu', 'leaky_relu'):
        final = [
            run['final_diagnostics'] for run in _members_at(runs[f'dead_{activation}'], summary['dead_learning_rate'])
        ]
        summary[f'dead_fraction_{activation}'] = _unit_fraction(final, 'dead_fraction') if final else float('nan')
        summary[f'inactive_fraction_{activation}'] = (
            _unit_fraction(final, 'inactive_fraction') if final else float('nan')
        )
    for activation in ACTIVATIONS:
        task, hparams = build(config, 'shallow', activation)
        name = f'shallow_{activation}'
        _, runs[name] = runner.run_variant(
            workdir, config, name, task, hparams, seeds, data, test, resume=resume, epochs=config.shallow.epochs
        )
        summary[f'shallow_{activation}_accuracy'] = mean_test_accuracy(runs[name])
    shallow = [summary[f'shallow_{activation}_accuracy'] for activation in ACTIVATIONS]
    summary['shallow_spread'] = max(shallow) - min(shallow)
    deep = [summary[f'{activation}_accuracy'] for activation in ACTIVATIONS]
    summary['deep_spread'] = max(deep) - min(deep)
    summary['wall_seconds'] = experiment.run_seconds(workdir, started)  # over every resumed segment

    figures = [plot_activation_functions(os.path.join(workdir, 'activations.png'), config)]
    figures.append(plot_gradients(os.path.join(workdir, 'gradient_norms.png'), runs, at_init))
    figures.append(plot_dead(os.path.join(workdir, 'dead_units.png'), config, runs))
    gradient_rows = []
    for activation in ACTIVATIONS:
        first, last = _gradient_ends(at_init[f'deep_{activation}'])
        trained = _gradient_ends(_final_diagnostics(runs[f'deep_{activation}']))
        gradient_rows.append([activation] + [f'{v:.3g}' for v in (first, last, first / last, *trained)])
    dead_rows = []
    for activation in ('relu', 'leaky_relu'):
        for rate in config.dead.learning_rates:
            final = [run['final_diagnostics'] for run in _members_at(runs[f'dead_{activation}'], rate)]
            dead_rows.append(
                [
                    activation,
                    rate,
                    'no' if _finite(runs[f'dead_{activation}'], rate) else 'yes',
                    _unit_fraction(final, 'dead_fraction'),
                    _unit_fraction(final, 'inactive_fraction'),
                    float(np.mean([run['test']['accuracy'] for run in _members_at(runs[f'dead_{activation}'], rate)])),
                ]
            )
    widths = lambda part: f'{len(config[part].model.hidden_widths)}×{config[part].model.hidden_widths[0]}'
    report.write_run(
        workdir,
        'Activation functions: sigmoid, tanh, ReLU, leaky ReLU',
        summary=summary,
        config=config.to_dict(),
        runs=runs,
        curves=['train_loss', 'test_accuracy'],
        sections=[
            report.prose(__doc__, 1, 3),
            f'Seeds {list(config.seeds)}; deep net {widths("deep")}, shallow {widths("shallow")}; wall time '
            f'{summary["wall_seconds"]:.0f} s.',
            '## Test accuracy (mean over seeds)',
            report.markdown_table(
                ['activation', 'deep', 'shallow'],
                [[a, summary[f'{a}_accuracy'], summary[f'shallow_{a}_accuracy']] for a in ACTIVATIONS],
            ),
            f'Spread (max − min): deep {summary["deep_spread"]:.4f}, shallow {summary["shallow_spread"]:.4f}.',
            '## Kernel-gradient norm of the first and the last hidden layer (mean over seeds)',
            report.markdown_table(
                [
                    'activation',
                    'layer 1 at init',
                    'last hidden at init',
                    'ratio at init',
                    'layer 1 trained',
                    'last hidden trained',
                ],
                gradient_rows,
            ),
            '## Dead and inactive units after training with plain SGD (fraction of all hidden units)',
            report.markdown_table(
                ['activation', 'learning rate', 'diverged', 'dead', 'inactive', 'test accuracy'], dead_rows
            ),
            f'The headline dead fractions are read at rate {summary["dead_learning_rate"]:g}, the highest at which '
            'no member of either activation diverged.',
        ],
        figures=figures,
        records={'init_diagnostics': at_init},
    )
    return summary


def _final_diagnostics(runs: dict) -> dict:
    """The diagnostics of every member's final weights, as {statistic: [members][layers]}."""
    return {name: [run['final_diagnostics'][name] for run in runs.values()] for name in diagnostics.STATISTICS}


def _gradient_ends(values: dict) -> tuple[float, float]:
    """Mean over members of the kernel-gradient norm of the first and the last hidden layer."""
    norms = np.atleast_2d(np.asarray(values['gradient_norm'], np.float64)).mean(0)
    return float(norms[0]), float(norms[-2])  # the last entry is the output layer


def plot_activation_functions(path: str, config) -> str:
    figure = diagnostics.activation_figure(ACTIVATIONS, negative_slope=0.1)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_gradients(path: str, runs: dict, at_init: dict) -> str:
    """Per-layer kernel-gradient norm (log scale) of the deep net, at init and after training, per activation."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for activation in ACTIVATIONS:
        name = f'deep_{activation}'
        for axis, values in zip(axes, (at_init[name], _final_diagnostics(runs[name]))):
            norms = np.atleast_2d(np.asarray(values['gradient_norm'], np.float64))
            layers = np.arange(1, norms.shape[1] + 1)
            report.plot_band(axis, layers, norms, activation, marker='o', markersize=3)
    for axis, when in zip(axes, ('at init', 'after training')):
        axis.set(yscale='log', xlabel='layer (the last is the output layer)', title=f'kernel-gradient norm {when}')
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_dead(path: str, config, runs: dict) -> str:
    """Dead and inactive fractions of hidden units after every epoch, per activation and learning rate."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, key in zip(axes, ('dead_fraction', 'inactive_fraction')):
        for activation in ('relu', 'leaky_relu'):
            for rate in config.dead.learning_rates:
                members = _members_at(runs[f'dead_{activation}'], rate)
                curves = np.array([[np.mean(row[key]) for row in run['history']] for run in members])
                axis.plot(
                    np.arange(1, curves.shape[1] + 1),
                    curves.mean(0),
                    '-' if activation == 'relu' else '--',
                    label=f'{activation}, lr {rate:g}',
                )
        axis.set(xlabel='epoch', ylabel=f'{key} of hidden units', title=key)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
