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

Each variant's seeds (and rates) train as one vmapped program; the test set only draws curves. In (1) and (3) every
activation gets the same tuning: its momentum rate from one grid (config.PART.learning_rates), chosen on a
10,000-image validation split by the mean over the seeds of the validation accuracy averaged over the last
config.final_epochs epochs. The claims pair the activations over the seeds at their chosen rates, by the test
accuracy averaged over the last config.final_epochs epochs (the rate is constant, so one epoch's number is noisy),
after epoch 1 for speed, and by the dead fraction at the headline rate; the shallow net's claims are of equivalence,
within config.shallow_margin. `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from nets import diagnostics, experiment, report, results, tasks, validation

ACTIVATIONS = ('sigmoid', 'tanh', 'relu', 'leaky_relu')
DEAD = ('relu', 'leaky_relu')  # the dead-unit sweep's
RATE = 'optimizer.learning_rate'
FITTING_INIT = {'sigmoid': 'glorot_normal', 'tanh': 'glorot_normal', 'relu': 'he_normal', 'leaky_relu': 'he_normal'}


# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {
    'allow_divergence': validation.boolean,
    'shallow_margin': validation.positive,
}


# The lab history behind the config (nets.experiment prints it in the report).
DEVELOPMENT = (
    'Seeds 0-4 developed the recipe, and seeds 100-104 confirmed it with one rate for every activation. Each '
    'activation then chose its own rate from 0.003, 0.01 and 0.03 on validation: a run on seeds 200-204 (2026-12-07) '
    'chose an end of that grid for 7 of its 8 choices (0.03 for every shallow net and for deep ReLU and leaky ReLU; '
    'deep sigmoid, at chance for every rate, took the first). The grids now reach 0.001-0.1 (deep) and 0.01-0.3 '
    "(shallow), and since that run's test numbers were read, its seeds joined the development seeds. The next, on "
    'seeds 300-304 (2026-12-07), chose 0.3, the top, for the shallow sigmoid net (its validation accuracy still '
    'rising: 0.9656 at 0.1, 0.9730 at 0.3): the shallow grid now reaches 1.0, and those seeds joined the development '
    'seeds. '
    'Its deep sigmoid net chose 0.001, the bottom, but by a tie: it stays at chance (0.1135) at every rate but 0.01.'
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    # Five confirmation seeds; the development seeds are DEVELOPMENT's.
    config = experiment.base_config(
        seeds=(400, 401, 402, 403, 404),
        development_seeds=(0, 1, 2, 3, 4, *range(100, 105), *range(200, 205), *range(300, 305)),
        checkpoint_every=5,
    )
    config.final_epochs = 3  # the claims' test accuracy: the mean over the last 3 epochs
    # The lecture's "does not matter much" for shallow nets, declared before the confirmation run: two activations'
    # test accuracies within one point of each other.
    config.shallow_margin = 0.01
    config.probe_size = 1000  # training images the diagnostics read
    config.update(tasks.task_config())
    config.negative_slope = 0.01
    # The dead-unit sweep's highest learning rate is meant to blow some nets up: their divergence is a result, so
    # it is recorded (results.json 'diverged') without failing the run.
    config.allow_divergence = True
    config.deep = dict(
        model=tasks.model_config(hidden_widths=(100,) * 10),
        optimizer=tasks.optimizer_config('momentum', momentum=0.9),
        learning_rates=(0.001, 0.003, 0.01, 0.03, 0.1),  # each activation chooses its own on validation
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
        optimizer=tasks.optimizer_config('momentum', momentum=0.9),
        learning_rates=(0.01, 0.03, 0.1, 0.3, 1.0),
        epochs=10,
    )
    if experiment.is_quick(arg, 'activations'):
        config.train_limit, config.test_limit, config.probe_size, config.seeds = 1024, 500, 256, (0, 1)
        config.development_seeds, config.final_epochs = (), 1  # a smoke run: it confirms nothing
        for part in (config.deep, config.dead, config.shallow):
            part.epochs = 2
        config.deep.model.hidden_widths = config.dead.model.hidden_widths = (16,) * 4
        config.shallow.model.hidden_widths = (16,)
        config.deep.learning_rates = config.shallow.learning_rates = (0.01, 0.03)
    return config


def task_changes(config, part: str, activation: str) -> dict:
    """The changes to the base task of `part` with `activation` and the init made for it."""
    settings = config[part]
    model = {**settings.model.to_dict(), 'activation': activation, 'kernel_init': FITTING_INIT[activation]}
    if activation == 'leaky_relu':
        model['negative_slope'] = config.negative_slope
    rate = {'learning_rate': settings.learning_rates[0]} if 'learning_rates' in settings else {}  # members replace it
    return {'model': model, 'optimizer': {**rate, **settings.optimizer.to_dict()}}


def stages(run) -> dict:
    """The deep net per activation at its rate chosen on validation, the dead-unit sweep of ReLU and leaky ReLU on
    every training image, then the shallow net per activation at its chosen rate; the deep and dead variants are
    probed at init and after every epoch. Returns the chosen rates' members and the diagnostics at init."""
    config = run.config
    every_image = run.data(validation_size=0)  # the dead-unit sweep chooses nothing
    probe = (every_image[0].train_images[: config.probe_size], every_image[0].train_labels[: config.probe_size])
    task = lambda part, activation: run.task(task_changes(config, part, activation))
    validation_key = results.mean_of_last('val_accuracy', config.final_epochs)
    choose = lambda name, runs: run.select_swept(name, runs, RATE, metric='val_accuracy', key=validation_key)[1]
    at_init, chosen = {}, {}
    for part, names in (('deep', ACTIVATIONS), ('dead', DEAD)):
        data = every_image if part == 'dead' else None
        options = dict(sweep={RATE: config[part].learning_rates}, epochs=config[part].epochs)
        for activation in names:
            name = f'{part}_{activation}'
            runs, at_init[name] = run.probed_variant(name, task(part, activation), probe, **options, data=data)
            if part == 'deep':
                chosen[name] = choose(name, runs)
    for activation in ACTIVATIONS:
        name = f'shallow_{activation}'  # with test curves, for the claims' last epochs
        sweep = {RATE: config.shallow.learning_rates}
        _, runs = run.variant(
            name, task('shallow', activation), sweep=sweep, epochs=config.shallow.epochs, test_curve=True
        )
        chosen[name] = choose(name, runs)
    return {'at_init': at_init, 'chosen': chosen}


def _members_at(runs: dict, learning_rate: float) -> list[dict]:
    return [run for run in runs.values() if run['hparams'].get('optimizer.learning_rate') == learning_rate]


def _finite(runs: dict, learning_rate: float) -> bool:
    """Whether no member at this rate diverged (its training loss never turned non-finite)."""
    return not any('diverged_epoch' in run for run in _members_at(runs, learning_rate))


def _unit_fraction(rows: list[dict], key: str) -> float:
    """The fraction over all hidden units (every layer has the same width), mean over the given members."""
    return float(np.mean([np.mean(row[key]) for row in rows]))


def summarize(run, staged: dict) -> experiment.Report:
    """Test accuracies and their spreads, the dead and inactive fractions, and the kernel-gradient norms."""
    config, at_init = run.config, staged['at_init']
    runs = {**run.runs, **staged['chosen']}  # the deep and shallow variants at their chosen rates
    summary = {f'{activation}_accuracy': results.mean_test(runs[f'deep_{activation}']) for activation in ACTIVATIONS}
    summary |= {
        f'{name}_learning_rate': next(iter(kept.values()))['hparams'][RATE] for name, kept in staged['chosen'].items()
    }
    # The headline rate: the highest at which no member of either activation diverged (a diverged member is frozen
    # at its weights of the epoch before, which say nothing about units dying under that rate).
    finite = [rate for rate in config.dead.learning_rates if all(_finite(runs[f'dead_{a}'], rate) for a in DEAD)]
    summary['dead_learning_rate'] = max(finite) if finite else float('nan')
    for activation in DEAD:
        final = [
            run['final_diagnostics'] for run in _members_at(runs[f'dead_{activation}'], summary['dead_learning_rate'])
        ]
        for key in ('dead_fraction', 'inactive_fraction'):
            summary[f'{key}_{activation}'] = _unit_fraction(final, key) if final else float('nan')
    for activation in ACTIVATIONS:
        summary[f'shallow_{activation}_accuracy'] = results.mean_test(runs[f'shallow_{activation}'])
    shallow = [summary[f'shallow_{activation}_accuracy'] for activation in ACTIVATIONS]
    summary['shallow_spread'] = max(shallow) - min(shallow)
    deep = [summary[f'{activation}_accuracy'] for activation in ACTIVATIONS]
    summary['deep_spread'] = max(deep) - min(deep)

    figures = [plot_activation_functions(os.path.join(run.workdir, 'activations.png'))]
    figures.append(plot_gradients(os.path.join(run.workdir, 'gradient_norms.png'), runs, at_init))
    figures.append(plot_dead(os.path.join(run.workdir, 'dead_units.png'), config, runs))
    # After the figures, as late as nets measures it, so that the text states the summary's value.
    summary['wall_seconds'] = run.wall_seconds()
    gradient_rows = []
    for activation in ACTIVATIONS:
        first, last = _gradient_ends(at_init[f'deep_{activation}'])
        trained = _gradient_ends(_final_diagnostics(runs[f'deep_{activation}']))
        gradient_rows.append([activation] + [f'{v:.3g}' for v in (first, last, first / last, *trained)])
    dead_rows = []
    for activation in DEAD:
        for rate in config.dead.learning_rates:
            members = _members_at(runs[f'dead_{activation}'], rate)
            final = [run['final_diagnostics'] for run in members]
            diverged = 'no' if _finite(runs[f'dead_{activation}'], rate) else 'yes'
            fractions = [_unit_fraction(final, key) for key in ('dead_fraction', 'inactive_fraction')]
            dead_rows.append([activation, rate, diverged, *fractions, results.mean_test(members)])
    widths = lambda part: f'{len(config[part].model.hidden_widths)}×{config[part].model.hidden_widths[0]}'
    return experiment.Report(
        'Activation functions: sigmoid, tanh, ReLU, leaky ReLU',
        summary,
        sections=[
            report.prose(__doc__, 1, 3),
            f'Seeds {list(config.seeds)}; deep net {widths("deep")}, shallow {widths("shallow")}; wall time '
            f'{summary["wall_seconds"]:.0f} s.',
            "## Test accuracy (mean over seeds) at each activation's rate chosen on validation",
            report.markdown_table(
                ['activation', 'deep', 'its rate', 'shallow', 'its rate'],
                [
                    [
                        a,
                        summary[f'{a}_accuracy'],
                        summary[f'deep_{a}_learning_rate'],
                        summary[f'shallow_{a}_accuracy'],
                        summary[f'shallow_{a}_learning_rate'],
                    ]
                    for a in ACTIVATIONS
                ],
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
        claims=verdicts(config, runs, summary['dead_learning_rate']),
        records={'init_diagnostics': at_init},
        curves=['train_loss', 'test_accuracy'],
    )


def verdicts(config, runs: dict, dead_rate: float) -> list[dict]:
    """The claims, each a paired difference over the seeds: the deep net (ReLU against sigmoid and tanh, late and
    after epoch 1), the shallow net (of equivalence: within config.shallow_margin), and dead units (ReLU against
    leaky ReLU at the headline rate)."""
    final = results.mean_of_last('test_accuracy', config.final_epochs)
    late = (f'test_accuracy, mean of the last {config.final_epochs} epochs', final)
    epoch_1 = ('test_accuracy after epoch 1', results.after_epoch('test_accuracy', 1))
    pair = lambda text, a, b, key, **kw: results.compare(text, runs, a, b, *key, **kw)
    margin = config.shallow_margin
    shallow = f'On a shallow net the activation does not matter much: ReLU and {{}} within {margin:g} of accuracy'
    claims = [
        pair(
            'Deep sigmoid nets train worse than deep ReLU nets (vanishing gradients)', 'deep_relu', 'deep_sigmoid', late
        ),
        pair('ReLU converges faster than tanh on the deep net', 'deep_relu', 'deep_tanh', epoch_1),
        pair('ReLU ends more accurate than tanh on the deep net', 'deep_relu', 'deep_tanh', late),
        *[
            pair(shallow.format(other), 'shallow_relu', f'shallow_{other}', late, expected='within', margin=margin)
            for other in ('sigmoid', 'tanh', 'leaky_relu')
        ],
    ]
    if not np.isnan(dead_rate):
        at_rate = {f'dead_{a}': dict(enumerate(_members_at(runs[f'dead_{a}'], dead_rate))) for a in DEAD}
        dead = lambda run: np.mean(run['final_diagnostics']['dead_fraction'])
        text = f'Under plain SGD at rate {dead_rate:g}, ReLU units die and leaky ReLU units do not'
        claims.append(
            results.compare(text, at_rate, 'dead_relu', 'dead_leaky_relu', 'dead fraction of hidden units', dead)
        )
    return claims


def _final_diagnostics(runs: dict) -> dict:
    """The diagnostics of every member's final weights, as {statistic: [members][layers]}."""
    return {name: [run['final_diagnostics'][name] for run in runs.values()] for name in diagnostics.STATISTICS}


def _gradient_ends(values: dict) -> tuple[float, float]:
    """Mean over members of the kernel-gradient norm of the first and the last hidden layer."""
    norms = np.atleast_2d(np.asarray(values['gradient_norm'], np.float64)).mean(0)
    return float(norms[0]), float(norms[-2])  # the last entry is the output layer


def plot_activation_functions(path: str) -> str:
    """Each activation and its derivative."""
    figure = diagnostics.activation_figure(ACTIVATIONS, negative_slope=0.1)
    with results.written_atomically(path, 'wb') as file:
        figure.savefig(file, dpi=120, format='png')
    plt.close(figure)
    return path


def plot_gradients(path: str, runs: dict, at_init: dict) -> str:
    """Per-layer kernel-gradient norm (log scale) of the deep net, at init and after training, per activation."""
    with report.figure(path, 1, 2, figsize=(11, 4), sharey=True) as (_, axes):
        for activation in ACTIVATIONS:
            name = f'deep_{activation}'
            for axis, values in zip(axes[0], (at_init[name], _final_diagnostics(runs[name]))):
                norms = np.atleast_2d(np.asarray(values['gradient_norm'], np.float64))
                layers = np.arange(1, norms.shape[1] + 1)
                report.plot_band(axis, layers, norms, activation, marker='o', markersize=3)
        for axis, when in zip(axes[0], ('at init', 'after training')):
            axis.set(yscale='log', xlabel='layer (the last is the output layer)', title=f'kernel-gradient norm {when}')
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    return path


def plot_dead(path: str, config, runs: dict) -> str:
    """Dead and inactive fractions of hidden units after every epoch, per activation and learning rate."""
    with report.figure(path, 1, 2, figsize=(11, 4), sharey=True) as (_, axes):
        for axis, key in zip(axes[0], ('dead_fraction', 'inactive_fraction')):
            for activation in DEAD:
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
    return path
