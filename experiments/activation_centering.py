"""Zero-centred activations: "the sigmoid is not zero-centred, and that slows training; tanh is" (the lecture).

One net (784 → 3×100 → 10, Glorot uniform, plain SGD, batch 100) with the sigmoid, the sigmoid made zero-centred
(σ(x) − ½: the same slope, only centred) and tanh (centred, and 4× steeper at 0). Each activation chooses its own
rate from one grid (config.learning_rates, members of one vmapped program with the seeds) on a 10,000-image
validation split, by the mean over the seeds of the validation accuracy averaged over the last config.final_epochs
epochs. The claims pair each centred activation with the sigmoid over the seeds at the chosen rates: the test
accuracy after the first epoch (the speed the lecture speaks of) and averaged over the last config.final_epochs
epochs. The test set only draws curves. `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import ml_collections

from nets import experiment, report, results, tasks

RATE = 'optimizer.learning_rate'
ACTIVATIONS = ('sigmoid', 'centered_sigmoid', 'tanh')
DESCRIBED = {'centered_sigmoid': 'The zero-centred sigmoid σ(x) − ½', 'tanh': 'tanh'}

# The lab history behind the config (nets.experiment prints it in the report).
DEVELOPMENT = (
    'The recipe was declared before any run. Seeds 0-2 were its development run (2026-12-07): on the grid 0.03-3 both '
    'sigmoids chose 3.0, its top, so the grid now reaches 10 (and drops 0.03, the worst for every activation).'
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    # Five confirmation seeds; the development seeds are DEVELOPMENT's.
    config = experiment.base_config(seeds=(100, 101, 102, 103, 104), development_seeds=(0, 1, 2), checkpoint_every=5)
    config.epochs = 10
    config.final_epochs = 3  # the claims' final accuracy: the mean over the last 3 epochs
    config.model = tasks.model_config(hidden_widths=(100, 100, 100), activation='sigmoid')
    config.optimizer = tasks.optimizer_config('sgd', 0.1)  # the rate: learning_rates
    config.update(tasks.task_config(batch_size=100))
    config.learning_rates = (0.1, 0.3, 1.0, 3.0, 10.0)
    if experiment.is_quick(arg, 'activation_centering'):
        experiment.smoke(config, learning_rates=(0.3, 1.0)).model.hidden_widths = (16, 16)
    return config


def stages(run) -> dict:
    """Every activation with the rates as members and the test accuracy after every epoch (a curve that chooses
    nothing); its rate chosen on validation. Returns the chosen rate's runs per activation."""
    model = lambda name: {**run.config.model.to_dict(), 'activation': name}
    return {
        'chosen': {
            name: run.tuned_variant(name, {'model': model(name)}, RATE, run.config.learning_rates)
            for name in ACTIVATIONS
        }
    }


def summarize(run, staged: dict) -> experiment.Report:
    """Each activation's chosen rate and test accuracy after epoch 1 and at the end; the claims against sigmoid."""
    config, chosen = run.config, staged['chosen']
    first = results.after_epoch('test_accuracy', 1)
    final = results.mean_of_last('test_accuracy', config.final_epochs)
    mean = results.mean_of
    summary, rows = {}, []
    for name, members in chosen.items():
        rate = next(iter(members.values()))['hparams'][RATE]
        summary |= {f'{name}_learning_rate': rate, f'{name}_accuracy_epoch_1': mean(members, first)}
        summary[f'{name}_accuracy'] = mean(members, final)
        rows.append([name, f'{rate:g}', summary[f'{name}_accuracy_epoch_1'], summary[f'{name}_accuracy']])
    claims = []
    for name, text in DESCRIBED.items():
        claims += [
            results.compare(
                f'{text} trains faster than the sigmoid', chosen, name, 'sigmoid', 'test_accuracy after epoch 1', first
            ),
            results.compare(
                f'{text} ends more accurate than the sigmoid',
                chosen,
                name,
                'sigmoid',
                f'test_accuracy, mean of the last {config.final_epochs} epochs',
                final,
            ),
        ]
    summary['wall_seconds'] = run.wall_seconds()  # over every resumed segment
    return experiment.Report(
        'Zero-centred activations',
        summary,
        claims=claims,
        sections=[
            report.prose(__doc__, 1, 2),
            f'Seeds {list(config.seeds)}, {config.epochs} epochs; wall time {summary["wall_seconds"]:.0f} s.',
            report.markdown_table(['activation', 'rate (validation)', 'test accuracy after epoch 1', 'final'], rows),
        ],
        curves=['train_loss', 'val_accuracy', 'test_accuracy'],
    )
