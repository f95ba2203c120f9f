"""Capacity: one hidden layer approximates smooth functions, and width against depth at an equal parameter count.

Universal approximation: a net with one hidden layer of w tanh units fits a 1-D function on [-1, 1] (a sine, |x| and
a step) by least squares; the error is the mean squared error on a dense grid of the interval, after training with
Adam at the learning rate that fits best, mean over seeds (each width's rates and seeds are one vmapped program).
Width against depth: MLPs of 1 to 8 hidden ReLU layers, each as wide as the parameter budget allows, trained on MNIST
with the same recipe; which one trains faster (validation accuracy after the first epoch) and which generalizes
better (test accuracy, and the gap between the final training and test accuracy). The claims pair over the seeds:
each function's grid error at the narrowest against the widest net, and each depth against one hidden layer by the
validation accuracy after epoch 1 and the test accuracy averaged over the last config.final_epochs epochs (Adam's rate
is constant, so one epoch's number is noisy). `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import os

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from nets import experiment, report, results, tasks, train, validation

FUNCTIONS = {
    'sin': lambda x: np.sin(2 * np.pi * x),  # two periods on [-1, 1]: smooth
    'abs': np.abs,  # continuous, with a kink
    'step': lambda x: (x > 0).astype(np.float64),  # not continuous: the uniform error cannot vanish
}
CONFIG_RULES = {  # the fields only this experiment has; nets.validation checks the shared ones
    'functions': validation.several(validation.name_in(FUNCTIONS)),
    'num_grid': validation.count,
    'widths': validation.several(validation.count),
    'depths': validation.several(validation.count),
    'parameter_budget': validation.count,
}


# The lab history behind the config (nets.experiment prints it in the report).
DEVELOPMENT = (
    'Seeds 0-2 developed the recipe. There 12 of 24 approximation fits chose the rate 0.3, the upper edge of the '
    'grid, so the grid goes one step higher. The confirmation on seeds 100-104 (2026-12-07) chose 1.0, the new top, '
    'for the step at widths 1 and 2: the grid goes one step higher again, to 3.0, and those seeds joined the '
    'development seeds, since their test numbers were read. The next, on seeds 200-204 (2026-12-07), chose inside the '
    'grid for the step at widths 1 and 2 (0.3) but 3.0, the new top, at widths 64 and 128 (training error 0.0018 and '
    '0.0020, against 0.0022 and 0.0021 at 0.03: two basins, with worse rates between them): the grid reaches 10.0, '
    'and those seeds joined the development seeds. The next, on seeds 300-304 (2026-12-07), chose 10.0, the new top, '
    'for the step at widths 8 and 32 (training error 0.00093 and 0.00096, against 0.0019 and 0.0021 inside the grid): '
    'the grid reaches 30.0, and those seeds joined the development seeds.'
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    # Five confirmation seeds; the development seeds are DEVELOPMENT's.
    config = experiment.base_config(
        seeds=(400, 401, 402, 403, 404),
        development_seeds=(0, 1, 2, *range(100, 105), *range(200, 205), *range(300, 305)),
        checkpoint_every=5,
    )
    config.approximation = dict(
        functions=tuple(FUNCTIONS),
        widths=(1, 2, 4, 8, 16, 32, 64, 128),
        num_train=4096,  # uniform on [-1, 1]
        num_grid=1000,  # the evenly spaced points where the error is measured
        problem_seed=0,
        activation='tanh',
        kernel_init='he_uniform',  # slopes up to ~2.4 in the first layer, so that units start with curvature
        # Adam, cosine-decayed to 0; each width gets its best.
        learning_rates=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
        batch_size=32,
        epochs=50,
    )
    config.parameter_budget = 100_000
    config.depths = (1, 2, 4, 8)
    config.model = tasks.model_config(hidden_widths=(), activation='relu', kernel_init='he_normal')  # widths per depth
    config.optimizer = tasks.optimizer_config('adam', 1e-3, transforms=())
    config.update(tasks.task_config())
    config.epochs = 10
    config.final_epochs = 3  # the claims' test accuracy: the mean over the last 3 epochs
    if experiment.is_quick(arg, 'capacity'):
        config.seeds, config.epochs, config.depths, config.parameter_budget = (0, 1), 2, (1, 3), 10_000
        config.development_seeds, config.final_epochs = (), 1  # a smoke run: it confirms nothing
        config.train_limit, config.validation_size, config.test_limit = 2000, 1000, 1000
        config.approximation.functions, config.approximation.widths, config.approximation.epochs = ('abs',), (1, 32), 40
        config.approximation.num_train, config.approximation.learning_rates = 256, (0.01, 0.1)
    return config


def parameter_count(inputs: int, width: int, depth: int, outputs: int) -> int:
    """Weights and biases of an MLP with `depth` hidden layers of `width` units."""
    return (inputs + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * outputs


def width_for_budget(budget: int, depth: int, inputs: int = 784, outputs: int = 10) -> int:
    """The largest width whose `depth`-layer MLP has at most `budget` parameters."""
    width = 1
    while parameter_count(inputs, width + 1, depth, outputs) <= budget:
        width += 1
    return width


def approximation_data(settings, function: str) -> train.Data:
    """Training points uniform on [-1, 1] and an evenly spaced grid (the 'validation' split) with f's values."""
    rng = np.random.default_rng(settings.problem_seed)
    x = rng.uniform(-1, 1, (settings.num_train, 1))
    grid = np.linspace(-1, 1, settings.num_grid)[:, None]
    f = FUNCTIONS[function]
    arrays = (x, f(x[:, 0]), grid, f(grid[:, 0]))
    return train.Data(*jax.device_put(tuple(np.asarray(a, np.float32) for a in arrays)))


def predict(task: train.Task, state: train.TrainState, inputs: jax.Array) -> np.ndarray:
    """Every member's outputs on `inputs` ([members, N]) of a stacked state."""
    apply = lambda s: task.model(s.hparams, s.params).apply({'params': s.params}, inputs, train=False)[:, 0]
    return np.asarray(jax.jit(jax.vmap(apply))(state))


def approximation_task(settings, width: int) -> tuple[train.Task, dict]:
    """One hidden layer of `width` units fitting one output by least squares, Adam cosine-decayed to 0 (the members
    set the rate)."""
    steps = settings.epochs * (settings.num_train // settings.batch_size)
    model = {'name': 'mlp', 'hidden_widths': (width,), 'num_classes': 1}
    optimizer = {'name': 'adam', 'learning_rate': settings.learning_rates[0]}
    task_config = {
        'model': {**model, 'activation': settings.activation, 'kernel_init': settings.kernel_init},
        'optimizer': {**optimizer, 'schedule': {'name': 'cosine_decay', 'decay_steps': steps}},
        'loss': 'half_squared_error',
        'batch_size': settings.batch_size,
    }
    return tasks.build(task_config, (1,))


def stages(run) -> dict:
    """Every function at every width, the learning rates and seeds as one program, then every depth at the parameter
    budget on MNIST; returns each width's chosen rate, its members' runs and fitted curves, and each depth's net."""
    config, settings = run.config, run.config.approximation
    staged = {'rates': {}, 'kept': {}, 'fits': {}, 'architectures': {}}
    for function in settings.functions:
        data = approximation_data(settings, function)
        for width in settings.widths:
            name, task = f'{function}_width_{width}', approximation_task(settings, width)
            sweep = {'optimizer.learning_rate': settings.learning_rates}
            state, runs = run.variant(name, task, sweep=sweep, data=(data, None), epochs=settings.epochs)
            # The capacity question is how well the width can fit, so each width gets its best-fitting rate: the
            # lowest mean final training error (a diverged rate never wins).
            staged['rates'][name], kept = run.select_swept(
                name, runs, 'optimizer.learning_rate', metric='train_mse', rule='min'
            )
            chosen = [i for i, label in enumerate(runs) if label in kept]
            staged['kept'][name] = kept
            staged['fits'][name] = predict(task[0], state, data.validation_images)[chosen]
    inputs, classes = run.input_shape[0], run.splits().num_classes
    _, test = run.data()
    for depth in config.depths:
        width = width_for_budget(config.parameter_budget, depth, inputs, classes)
        task = run.task({'model': {**config.model.to_dict(), 'hidden_widths': (width,) * depth}})
        run.variant(f'depth_{depth}', task, test_curve=True)  # the claims' last epochs
        parameters = parameter_count(inputs, width, depth, classes)
        staged['architectures'][f'depth_{depth}'] = {'width': width, 'depth': depth, 'parameters': parameters}
    return staged


def summarize(run, staged: dict):
    """The approximation errors and every depth's headlines, the tables and the figures."""
    config, kept, architectures = run.config, staged['kept'], staged['architectures']
    errors = lambda name: results.mean_at(kept[name], 'val_mse')
    summary = {
        f'{function}_error_width_{width}': errors(f'{function}_width_{width}')
        for function in config.approximation.functions
        for width in config.approximation.widths
    }
    for name, architecture in architectures.items():
        members = list(run.runs[name].values())
        test_accuracy = results.mean_test(members)
        summary |= {
            f'{name}_width': architecture['width'],
            f'{name}_parameters': architecture['parameters'],
            f'{name}_epoch_1_val_accuracy': results.mean_at(members, 'val_accuracy', 0),
            f'{name}_final_train_loss': results.mean_at(members, 'train_loss'),
            f'{name}_test_accuracy': test_accuracy,
            f'{name}_gap': results.mean_at(members, 'train_accuracy') - test_accuracy,
        }
    depth_runs = {name: run.runs[name] for name in architectures}
    figures = [
        plot_approximation(os.path.join(run.workdir, 'approximation.png'), config, summary, staged['fits']),
        plot_width_depth(os.path.join(run.workdir, 'width_depth.png'), config, depth_runs),
    ]
    return experiment.Report(
        'Capacity: universal approximation, and width against depth',
        summary,
        claims=verdicts(config, kept, depth_runs),
        sections=[report.prose(__doc__, 1, 2), describe(config, summary, staged['rates'])],
        figures=figures,
        records={'architectures': architectures, 'approximation_learning_rates': staged['rates']},
        runs={**kept, **depth_runs},  # each width's chosen rate only
        curves=['val_accuracy'],
    )


def verdicts(config, kept: dict, depth_runs: dict) -> list[dict]:
    """The claims, each a paired difference over the seeds: every function's grid error from the narrowest to the
    widest net (each at its best-fitting rate), then every depth against one hidden layer, early and late."""
    narrow, wide = min(config.approximation.widths), max(config.approximation.widths)
    error = lambda run: run['history'][-1]['val_mse']
    claims = []
    for function in config.approximation.functions:
        text = f'One hidden tanh layer fits {function} better when wider ({narrow} → {wide} units)'
        pair = f'{function}_width_{narrow}', f'{function}_width_{wide}'
        claims.append(results.compare(text, kept, *pair, 'grid mean squared error', error))
    epoch_1, first = 'val_accuracy after epoch 1', results.after_epoch('val_accuracy', 1)
    last, final = (
        f'test_accuracy, mean of the last {config.final_epochs} epochs',
        results.mean_of_last('test_accuracy', config.final_epochs),
    )
    shallow = f'depth_{min(config.depths)}'
    for name in (name for name in depth_runs if name != shallow):
        text = (
            f'At {config.parameter_budget:,} parameters, {name.replace("_", " ")} {{}} than {shallow.replace("_", " ")}'
        )
        claims += [
            results.compare(text.format('trains faster'), depth_runs, name, shallow, epoch_1, first),
            results.compare(text.format('generalizes better'), depth_runs, name, shallow, last, final),
        ]
    return claims


def describe(config, summary, rates) -> str:
    """The setup and the tables: every function's error at every width (the chosen rate in brackets), and every
    depth's headlines."""
    settings = config.approximation
    cell = lambda function, width: (  # the error, and the chosen rate in brackets
        f'{summary[f"{function}_error_width_{width}"]:.2e} ({rates[f"{function}_width_{width}"]:g})'
    )
    rows = [[function, *(cell(function, width) for width in settings.widths)] for function in settings.functions]
    columns = ('width', 'parameters', 'epoch_1_val_accuracy', 'final_train_loss', 'test_accuracy', 'gap')
    depth_rows = [[depth, *(summary[f'depth_{depth}_{column}'] for column in columns)] for depth in config.depths]
    steps = settings.epochs * (settings.num_train // settings.batch_size)
    return (
        f'Approximation: {settings.num_train} training points, one hidden layer of {settings.activation} units '
        f'({settings.kernel_init}), Adam cosine-decayed over {steps} steps of batch {settings.batch_size}; the '
        f'learning rates {tuple(settings.learning_rates)} and seeds {list(config.seeds)} are one program per width, '
        'which keeps the rate with the lowest mean final training error. Mean squared error on '
        f'{settings.num_grid} evenly spaced points of [-1, 1], mean over seeds (the chosen rate in brackets):\n\n'
        + report.markdown_table(['function', *[f'width {width}' for width in settings.widths]], rows)
        + f'\n\nWidth against depth: a budget of {config.parameter_budget:,} parameters, ReLU (He init), Adam '
        f'{config.optimizer.learning_rate}, batch {config.batch_size}, {config.epochs} epochs, seeds '
        f'{list(config.seeds)} in one program per depth; "gap" is the last epoch\'s training accuracy (measured '
        'during the epoch) minus the test accuracy.\n\n'
        + report.markdown_table(
            [
                'hidden layers',
                'width',
                'parameters',
                'validation accuracy after epoch 1',
                'final training loss',
                'test accuracy',
                'gap',
            ],
            depth_rows,
        )
    )


def plot_approximation(path: str, config, summary, fits) -> str:
    """Per function: the fits of seed 0 at each width over the target; then the error against the width."""
    settings = config.approximation
    grid = np.linspace(-1, 1, settings.num_grid)
    functions = settings.functions
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(settings.widths)))
    with report.figure(path, 1, len(functions) + 1, figsize=(4.5 * (len(functions) + 1), 3.8)) as (_, axes):
        for axis, function in zip(axes[0], functions):
            axis.plot(grid, FUNCTIONS[function](grid), 'k-', linewidth=2.5, alpha=0.4, label='target')
            for color, width in zip(colors, settings.widths):
                axis.plot(grid, fits[f'{function}_width_{width}'][0], color=color, linewidth=1, label=f'{width} units')
            axis.set(title=function, xlabel='x')
            axis.legend(fontsize=7)
        by_width = axes[0][-1]
        for function in functions:
            errors = [summary[f'{function}_error_width_{width}'] for width in settings.widths]
            by_width.loglog(settings.widths, errors, 'o-', label=function)
        by_width.set(xlabel='hidden units (one layer)', ylabel='mean squared error on the grid')
        by_width.legend()
        for axis in axes[0]:
            axis.grid(alpha=0.3)
    return path


def plot_width_depth(path: str, config, runs) -> str:
    """Validation accuracy and training loss against the epoch, one line per depth (mean over seeds)."""
    with report.figure(path, 1, 2, figsize=(10, 3.8)) as (figure, axes):
        for name, by_member in runs.items():
            for axis, metric in zip(axes[0], ('val_accuracy', 'train_loss')):
                curve = np.mean([[row[metric] for row in run['history']] for run in by_member.values()], 0)
                axis.plot(np.arange(1, len(curve) + 1), curve, 'o-', markersize=3, label=name.replace('_', ' '))
        for axis, label in zip(axes[0], ('validation accuracy', 'training loss')):
            axis.set(xlabel='epoch', ylabel=label)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        axes[0][1].set_yscale('log')
        figure.suptitle(f'{config.parameter_budget:,} parameters at every depth')
    return path
