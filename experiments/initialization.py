"""Weight initialization: Nikolenko's MNIST comparison (p. 149), and deep ReLU and tanh nets (He et al. 2015).

(a) 784 → 4×100 tanh → 10, Keras `uniform` (U(-0.05, 0.05)) against `glorot_normal`, SGD 0.01, batch 64, 30 epochs,
    on all 60,000 training images; test accuracy after every epoch.
(b) A deep ReLU MLP (30 hidden layers of 100) with He, Glorot and uniform init: the per-layer activation variance
    at init (He keeps it, Glorot halves it every layer, uniform shrinks it ~25× a layer) and the training curves.
(c) The same deep net with tanh, where Glorot is the fitting choice.

Each init is one variant; its seeds train as one vmapped program. The test set only draws curves (nothing is chosen
on it). Diagnostics (nets.diagnostics) on a probe of training images are recorded at init and after every epoch.
`:quick` is a seconds-scale version.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from nets import experiment, initializers, report, results, tasks, validation

# A public reproduction of Nikolenko's p.149 experiment: test accuracy after epochs 1, 2 and 30.
PUBLISHED = {'uniform': {1: 0.11, 2: 0.11, 30: 0.9607}, 'glorot_normal': {1: 0.899, 30: 0.9702}}
DEEP = ('deep_relu', 'deep_tanh')
PARTS = ('shallow', *DEEP)


# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {
    'inits': validation.several(validation.name_in(initializers.INITIALIZERS)),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    config = experiment.base_config(seeds=(0, 1, 2, 3, 4), checkpoint_every=5)
    config.probe_size = 1000  # training images the diagnostics read
    config.loss = 'softmax_cross_entropy'
    config.penalties = ()
    config.early_stopping = tasks.early_stopping_config()
    config.shallow = dict(
        model=tasks.model_config(hidden_widths=(100,) * 4, activation='tanh'),
        optimizer=tasks.optimizer_config('sgd', 0.01),
        batch_size=64,
        epochs=30,
        inits=('uniform', 'glorot_normal'),
    )
    deep = lambda activation: dict(
        model=tasks.model_config(hidden_widths=(100,) * 30, activation=activation),
        # 0.01 made the 30-layer He ReLU net unstable (train accuracy fell from 0.88 to 0.72 over epochs 3-9).
        optimizer=tasks.optimizer_config('momentum', 0.003, momentum=0.9),
        batch_size=128,
        epochs=10,
        inits=('he_normal', 'glorot_normal', 'uniform'),
    )  # a fresh config for each net, so that setting one never sets the other
    config.deep_relu, config.deep_tanh = deep('relu'), deep('tanh')
    if experiment.is_quick(arg, 'initialization'):
        config.train_limit, config.test_limit, config.probe_size, config.seeds = 1024, 500, 256, (0, 1)
        for part in (config.shallow, config.deep_relu, config.deep_tanh):
            part.epochs = 2
        config.deep_relu.model.hidden_widths = config.deep_tanh.model.hidden_widths = (16,) * 4
    return config


def stages(run) -> dict:
    """Every part's inits on all training images, each a variant probed at init and after every epoch."""
    config = run.config
    data = run.data(validation_size=0)
    probe = (data[0].train_images[: config.probe_size], data[0].train_labels[: config.probe_size])
    at_init = {}
    for part in PARTS:
        settings = config[part]
        for init in settings.inits:
            task = run.task({**settings.to_dict(), 'model': {**settings.model.to_dict(), 'kernel_init': init}})
            name = f'{part}_{init}'
            _, at_init[name] = run.probed_variant(name, task, probe, data=data, epochs=settings.epochs)
    return {'at_init': at_init}


def test_accuracy_after(runs: dict, epoch: int) -> float:
    """Mean over members of the test accuracy after `epoch` (the evaluation hook's)."""
    return results.mean_at(runs, 'test_accuracy', epoch - 1)


def summarize(run, staged: dict) -> experiment.Report:
    """The test accuracies against the published ones, and the deep nets' pre-activation variance at init."""
    config, runs, at_init = run.config, run.runs, staged['at_init']
    summary = {}
    for init in config.shallow.inits:
        for epoch in (1, 2):
            summary[f'{init}_accuracy_epoch_{epoch}'] = test_accuracy_after(runs[f'shallow_{init}'], epoch)
        summary[f'{init}_accuracy_final'] = results.mean_test(runs[f'shallow_{init}'])
    for part in DEEP:
        for init in config[part].inits:
            summary[f'{part}_{init}_accuracy'] = results.mean_test(runs[f'{part}_{init}'])
    figures = [
        plot_shallow(os.path.join(run.workdir, 'nikolenko_p149.png'), config, runs),
        plot_deep(os.path.join(run.workdir, 'deep_nets.png'), config, runs, at_init),
    ]
    # After the figures, as late as nets measures it, so that the text states the summary's value.
    summary['wall_seconds'] = run.wall_seconds()
    shallow_rows = [
        [
            init,
            PUBLISHED[init].get(1, ''),
            summary[f'{init}_accuracy_epoch_1'],
            PUBLISHED[init].get(2, ''),
            summary[f'{init}_accuracy_epoch_2'],
            PUBLISHED[init][30],
            summary[f'{init}_accuracy_final'],
        ]
        for init in config.shallow.inits
    ]
    deep_rows = [
        [
            part,
            init,
            summary[f'{part}_{init}_accuracy'],
            *(f'{v:.3g}' for v in _variance_ends(at_init[f'{part}_{init}'])),
        ]
        for part in DEEP
        for init in config[part].inits
    ]
    return experiment.Report(
        'Weight initialization (Nikolenko p.149; He et al. 2015)',
        summary,
        sections=[
            report.prose(__doc__, 1, 3),
            f'Seeds {list(config.seeds)}; wall time {summary["wall_seconds"]:.0f} s.',
            '## (a) Nikolenko p.149 (published: a public reproduction, one run)',
            report.markdown_table(
                [
                    'init',
                    'published ep. 1',
                    'ours ep. 1',
                    'published ep. 2',
                    'ours ep. 2',
                    'published final',
                    'ours final',
                ],
                shallow_rows,
            ),
            '## (b, c) Deep nets: final test accuracy, and the pre-activation variance at init (He et al.: Var[y_l])',
            report.markdown_table(
                ['net', 'init', 'test accuracy', 'pre-activation variance, layer 1', 'last layer'], deep_rows
            ),
        ],
        figures=figures,
        records={'init_diagnostics': at_init},
        curves=['train_loss', 'test_accuracy'],
    )


def _variance_ends(values: dict) -> list[float]:
    """Mean over members of the pre-activation variance of the first and the last hidden layer at init."""
    variance = np.atleast_2d(np.asarray(values['preactivation_variance'], np.float64)).mean(0)
    return [float(variance[0]), float(variance[-1])]


def plot_shallow(path: str, config, runs: dict) -> str:
    """Test accuracy per epoch of part (a), per init, with the published points."""
    with report.figure(path, figsize=(6, 4)) as (_, axes):
        axis = axes[0][0]
        for init in config.shallow.inits:
            curves = [[row['test_accuracy'] for row in run['history']] for run in runs[f'shallow_{init}'].values()]
            line = report.plot_band(axis, np.arange(1, len(curves[0]) + 1), curves, f'{init} (ours, seed band)')
            epochs = sorted(PUBLISHED[init])
            published = [PUBLISHED[init][e] for e in epochs]
            axis.plot(epochs, published, 'x', color=line.get_color(), label=f'{init} published')
        axis.set(xlabel='epoch', ylabel='test accuracy', ylim=(0, 1), title='784-4×100 tanh-10, SGD 0.01, batch 64')
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return path


def plot_deep(path: str, config, runs: dict, at_init: dict) -> str:
    """Per deep net: activation variance per layer at init (log scale), and test accuracy per epoch, per init."""
    with report.figure(path, 2, 2, figsize=(11, 7)) as (_, axes):
        for column, part in enumerate(DEEP):
            top, bottom = axes[:, column]
            for init in config[part].inits:
                name = f'{part}_{init}'
                variance = np.atleast_2d(np.asarray(at_init[name]['preactivation_variance'], np.float64))
                report.plot_band(top, np.arange(1, variance.shape[1] + 1), variance, init)
                curves = [[row['test_accuracy'] for row in run['history']] for run in runs[name].values()]
                report.plot_band(bottom, np.arange(1, len(curves[0]) + 1), curves, init)
            top.set(yscale='log', xlabel='hidden layer', ylabel='pre-activation variance at init', title=part)
            bottom.set(xlabel='epoch', ylabel='test accuracy', ylim=(0, 1))
            for axis in (top, bottom):
                axis.grid(alpha=0.3)
                axis.legend(fontsize=8)
    return path
