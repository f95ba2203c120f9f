"""The step size: a learning-rate sweep for SGD, SGD with momentum and Adam, and learning-rate schedules.

(1) One MLP (784 → 100 → 100 → 10 ReLU, He init, batch 128) trained for a few epochs at every rate of a log grid,
    per optimizer; the rates and seeds of one optimizer are the members of one vmapped program. The final training
    loss against the rate draws the classic U: too small a step barely moves, too large a step diverges. The best
    rate is the one with the best mean final validation accuracy (10,000 images held out of the training set).
(2) Schedules for SGD with momentum at its best rate from (1): constant, step decay (×0.1 at half and at three
    quarters of the steps), cosine decay, linear warmup then cosine, and reduce-on-plateau (halve the step when the
    epoch's mean training loss stops improving; optax.contrib.reduce_on_plateau, fed each batch's loss).

Test accuracy is reported for the chosen rate and for every schedule; nothing is chosen on it. The claims pair
over the seeds: each optimizer at its chosen rate against plain SGD at its own, by the test accuracy averaged over
the sweep's last config.final_epochs epochs (the rates are constant, so one epoch's number is noisy); and each
schedule against the constant rate, by the final test accuracy (the schedules decay to the end; the constant arm's
one-epoch noise widens the interval, it does not bias it). `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from nets import experiment, optimizers, report, results, tasks, validation

OPTIMIZERS = ('sgd', 'momentum', 'adam')
SCHEDULES = ('constant', 'step_decay', 'cosine_decay', 'warmup_cosine_decay', 'reduce_on_plateau')
RATE = 'optimizer.learning_rate'  # the sweep's path


# Each optimizer's learning-rate grid: (log10 low, log10 high, count); config.optimizers.NAME is optimizer NAME.
CONFIG_RULES = {  # the fields only this experiment has; nets.validation checks the shared ones
    **{f'grids.{name}': validation.grid for name in optimizers.OPTIMIZERS},
    **{f'optimizers.{name}.name': validation.name_in((name,)) for name in OPTIMIZERS},
    'rtol': validation.positive,
    'schedule_epochs': validation.count,
    'warmup_fraction': validation.rate,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    # Five confirmation seeds; 0-2 developed the recipe.
    config = experiment.base_config(seeds=(100, 101, 102, 103, 104), development_seeds=(0, 1, 2), checkpoint_every=5)
    config.model = tasks.model_config(hidden_widths=(100, 100), activation='relu', kernel_init='he_normal')
    # Each optimizer's constants; its learning rates are the grid's, and momentum's schedules are stages()'s.
    config.optimizers = {name: tasks.optimizer_config(name, schedule=None) for name in OPTIMIZERS}
    config.update(tasks.task_config())
    config.sweep_epochs = 5
    config.final_epochs = 3  # the optimizer claims' test accuracy: the mean over the sweep's last 3 epochs
    # log10 of the lowest and highest rate, and how many rates, per optimizer.
    config.grids = dict(sgd=(-3.0, 1.0, 9), momentum=(-4.0, 0.0, 9), adam=(-5.0, -1.0, 9))
    config.schedule_epochs = 15
    config.warmup_fraction = 0.05
    config.plateau = dict(factor=0.5, patience=1, rtol=1e-3)  # on each epoch's mean training loss
    if experiment.is_quick(arg, 'step_size'):
        config.validation_size, config.train_limit, config.test_limit, config.seeds = 500, 1024, 500, (0, 1)
        config.model.hidden_widths = (32,)
        config.sweep_epochs, config.schedule_epochs = 2, 2
        config.development_seeds, config.final_epochs = (), 1  # a smoke run: it confirms nothing
        config.grids = dict(sgd=(-2.0, 0.0, 3), momentum=(-3.0, -1.0, 3), adam=(-4.0, -2.0, 3))
    return config


def rates(grid) -> tuple[float, ...]:
    """The learning rates of a grid (log10 low, log10 high, count), evenly spaced in log."""
    low, high, count = grid
    return tuple(float(rate) for rate in np.logspace(low, high, int(count)))


def _final(run: dict, metric: str) -> float:
    value = run['history'][-1].get(metric)
    return float('nan') if value is None else float(value)


def final_by_rate(runs: dict, metric: str) -> dict[float, float]:
    """{rate: the mean over its seeds of the final `metric`} (NaN where a seed diverged)."""
    return experiment.member_values(runs, lambda member: _final(member, metric), by=RATE)


def schedule_config(name: str, config, steps: int) -> tuple[dict, tuple]:
    """(schedule, extra transforms) of a named schedule over `steps` steps."""
    if name == 'step_decay':
        return {'name': 'step_decay', 'boundaries': (steps // 2, 3 * steps // 4), 'factor': 0.1}, ()
    if name == 'cosine_decay':
        return {'name': 'cosine_decay', 'decay_steps': steps}, ()
    if name == 'warmup_cosine_decay':
        warmup = max(1, int(config.warmup_fraction * steps))
        return {'name': 'warmup_cosine_decay', 'warmup_steps': warmup, 'decay_steps': steps}, ()
    if name == 'reduce_on_plateau':
        steps_per_epoch = steps // config.schedule_epochs
        plateau = {'name': 'reduce_on_plateau', **config.plateau.to_dict(), 'accumulation_size': steps_per_epoch}
        return {}, (plateau,)
    return {}, ()


def stages(run) -> dict:
    """The sweep of each optimizer's rates with the best chosen on validation, then momentum's schedules at its
    best rate; returns what summarize reads."""
    config = run.config
    best, kept = {}, {}
    for name in OPTIMIZERS:
        grid = rates(config.grids[name])
        optimizer = {**config.optimizers[name].to_dict(), 'learning_rate': grid[0]}  # members replace the rate
        changes, sweep = {'optimizer': optimizer}, {RATE: grid}
        # With test curves, for the claims' last epochs.
        epochs = config.sweep_epochs
        _, runs = run.variant(f'sweep_{name}', changes=changes, sweep=sweep, epochs=epochs, test_curve=True)
        best[name], kept[name] = run.select_swept(
            f'sweep_{name}', runs, RATE, metric='val_accuracy', key=lambda member: _final(member, 'val_accuracy')
        )

    steps = (len(run.splits().train_labels) // config.batch_size) * config.schedule_epochs
    for name in SCHEDULES:
        schedule, transforms = schedule_config(name, config, steps)
        optimizer = {
            **config.optimizers.momentum.to_dict(),
            'learning_rate': best['momentum'],
            'schedule': schedule,
            'transforms': transforms,
        }
        run.variant(f'schedule_{name}', changes={'optimizer': optimizer}, epochs=config.schedule_epochs)
    return {'best': best, 'kept': kept, 'steps': steps}


def summarize(run, staged: dict):
    """Each optimizer's best rate and its test accuracy, each schedule's; the sweep's table and the figures."""
    config, runs, best = run.config, run.runs, staged['best']
    summary = {}
    for name in OPTIMIZERS:
        summary[f'best_learning_rate_{name}'] = best[name]
        summary[f'accuracy_{name}'] = results.mean_test(staged['kept'][name])
    for name in SCHEDULES:
        summary[f'schedule_{name}_accuracy'] = results.mean_test(runs[f'schedule_{name}'])
    # The run's over every resumed segment (nets.experiment sets the summary's; the section quotes it).
    summary['wall_seconds'] = run.wall_seconds()

    peak = best['momentum']
    figures = [
        plot_sweep(os.path.join(run.workdir, 'learning_rate_sweep.png'), runs),
        plot_schedules(os.path.join(run.workdir, 'schedules.png'), config, runs, peak, staged['steps']),
    ]
    sweep_rows = []
    for name in OPTIMIZERS:
        loss = final_by_rate(runs[f'sweep_{name}'], 'train_loss')
        accuracy = final_by_rate(runs[f'sweep_{name}'], 'val_accuracy')
        for rate in loss:
            marker = ' (best)' if rate == best[name] else ''
            sweep_rows.append([name + marker, f'{rate:.3g}', loss[rate], accuracy[rate]])
    return experiment.Report(
        'The step size: learning-rate sweeps and schedules',
        summary,
        claims=verdicts(config, runs, staged['kept']),
        sections=[
            report.prose(__doc__, 1, 3),
            f'Seeds {list(config.seeds)}; wall time {summary["wall_seconds"]:.0f} s.',
            '## Sweep: final training loss and validation accuracy (mean over seeds; nan: diverged)',
            report.markdown_table(['optimizer', 'learning rate', 'final train loss', 'final val accuracy'], sweep_rows),
            f'## Schedules (SGD with momentum, peak rate {peak:.3g}, {config.schedule_epochs} epochs): test accuracy',
            report.markdown_table(
                ['schedule', 'test accuracy'], [[name, summary[f'schedule_{name}_accuracy']] for name in SCHEDULES]
            ),
        ],
        figures=figures,
        curves=['train_loss', 'val_accuracy'],
    )


def verdicts(config, runs: dict, kept: dict) -> list[dict]:
    """The claims, each a paired difference over the seeds: momentum and Adam against plain SGD (each at its rate
    chosen on validation from an equal grid), then every schedule against the constant rate."""
    final = results.mean_of_last('test_accuracy', config.final_epochs)
    metric = f'test_accuracy, mean of the last {config.final_epochs} of {config.sweep_epochs} epochs'
    chosen = {f'sweep_{name}': members for name, members in kept.items()}
    text = '{} beats plain SGD, each at its own rate chosen on validation'
    claims = [
        results.compare(text.format(name.capitalize()), chosen, f'sweep_{name}', 'sweep_sgd', metric, final)
        for name in OPTIMIZERS
        if name != 'sgd'
    ]
    text = '{} beats a constant rate (SGD with momentum, the same peak rate)'
    claims += [
        results.compare(text.format(name.replace('_', ' ').capitalize()), runs, f'schedule_{name}', 'schedule_constant')
        for name in SCHEDULES
        if name != 'constant'
    ]
    return claims


def plot_sweep(path: str, runs: dict) -> str:
    """Final training loss (the U-curve) and final validation accuracy against the rate, per optimizer."""
    with report.figure(path, 1, 2, figsize=(11, 4)) as (_, axes):
        for name in OPTIMIZERS:
            for axis, metric in zip(axes[0], ('train_loss', 'val_accuracy')):
                values = final_by_rate(runs[f'sweep_{name}'], metric)
                grid = sorted(values)
                mean = np.array([values[rate] for rate in grid])
                if metric == 'train_loss':
                    mean = np.where(np.isfinite(mean), np.minimum(mean, 3.0), 3.0)  # diverged: drawn at the top
                axis.plot(grid, mean, marker='o', label=name)
        loss, accuracy = axes[0]
        loss.set(
            xscale='log', xlabel='learning rate', ylabel='final training loss (diverged drawn at 3)', ylim=(0, 3.1)
        )
        accuracy.set(xscale='log', xlabel='learning rate', ylabel='final validation accuracy')
        for axis in axes[0]:
            axis.grid(alpha=0.3)
            axis.legend()
    return path


def plot_schedules(path: str, config, runs: dict, peak: float, steps: int) -> str:
    """Each schedule's rate against the step (reduce-on-plateau's is data-dependent: not drawn) and the mean
    validation accuracy per epoch."""
    grid = np.arange(0, steps, max(1, steps // 200))
    with report.figure(path, 1, 2, figsize=(11, 4)) as (_, axes):
        by_step, by_epoch = axes[0]
        for name in SCHEDULES:
            schedule, _ = schedule_config(name, config, steps)
            if name != 'reduce_on_plateau':
                rate = [float(optimizers.learning_rate_at({'schedule': schedule}, peak, step)) for step in grid]
                by_step.plot(grid, rate, label=name)
            curves = np.array(
                [[row['val_accuracy'] for row in run['history']] for run in runs[f'schedule_{name}'].values()]
            )
            by_epoch.plot(np.arange(1, curves.shape[1] + 1), curves.mean(0), label=name)
        by_step.set(xlabel='step', ylabel='learning rate')
        by_epoch.set(xlabel='epoch', ylabel='validation accuracy (mean over seeds)')
        for axis in axes[0]:
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    return path
