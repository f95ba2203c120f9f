"""Too many neurons, too little data: the lecture's overfitting, as a sweep of the width.

One hidden ReLU layer (He normal, Adam 1e-3, batch 64, no regularization) of each width in config.widths (2 to
8192), trained for config.epochs epochs on config.train_limit training images (a fixed subset drawn with the split
from the run's first seed), with config.validation_size more held out as validation. Each width's seeds are one
vmapped program. The generalization gap is the training accuracy of the last epoch minus the final test accuracy;
the test set is read once, at the end, and chooses nothing. The claims: (1) the gap of the widest net is larger
than that of the narrowest; (2) "too many neurons" hurts: the widest net tests worse than the narrower width that
validation prefers (the best mean final validation accuracy over the seeds, among every width but the widest). The
width validation prefers among all of them is reported too. A test error that falls again past the width where the
training set is fitted exactly (double descent) shows in width.png. `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import os

import ml_collections

from nets import experiment, report, results, tasks, validation

# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {'widths': validation.several(validation.count)}

# The lab history behind the config (nets.experiment prints it in the report).
DEVELOPMENT = (
    'The recipe was declared before any run. Seeds 0-2 were its development run (2026-12-07): the nets from 64 units '
    'on fit every training image, and validation chose 2048, the widest (the test accuracy still rose with the '
    'width and the gap fell after 4 units), so the grid now reaches 8192. Seeds 100-104 confirmed that (2026-12-07, '
    'both claims inconclusive), but validation chose the widest again, so the second claim, then "the widest tests '
    'worse than the width validation chose", compared the widest net with itself. It now compares the widest with '
    'the narrower width validation prefers, on fresh seeds 200-204.'
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    # Five confirmation seeds; the development seeds are DEVELOPMENT's.
    config = experiment.base_config(
        seeds=(200, 201, 202, 203, 204),
        development_seeds=(0, 1, 2, 100, 101, 102, 103, 104),
        validation_size=2000,
        checkpoint_every=50,
    )
    config.train_limit = 1000
    config.epochs = 100  # 1,600 steps: the wide nets fit every training image
    config.widths = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
    config.model = tasks.model_config(hidden_widths=(16,), activation='relu', kernel_init='he_normal')
    config.optimizer = tasks.optimizer_config('adam', 1e-3)
    config.update(tasks.task_config(batch_size=64))
    if experiment.is_quick(arg, 'width'):
        experiment.smoke(config, validation_size=300, train_limit=256, epochs=3, widths=(2, 8, 32))
    return config


def stages(run) -> dict:
    """Every width; the width validation prefers."""
    config, mean = run.config, results.mean_of
    for width in config.widths:
        run.variant(f'width_{width}', changes={'model': {**config.model.to_dict(), 'hidden_widths': (width,)}})
    final_val = results.mean_of_last('val_accuracy', 1)
    scores = {width: mean(run.runs[f'width_{width}'], final_val) for width in config.widths}
    narrower = {width: score for width, score in scores.items() if width < max(config.widths)}
    return {
        'chosen': run.select('width', scores, metric='val_accuracy'),
        'narrower': run.select('narrower width', narrower, metric='val_accuracy'),
    }


def gap(run_: dict) -> float:
    """The last epoch's training accuracy minus the final test accuracy."""
    return run_['history'][-1]['train_accuracy'] - run_['test']['accuracy']


def summarize(run, staged: dict) -> experiment.Report:
    """Per width: training, validation and test accuracy and the gap; the claims; width.png."""
    config, chosen = run.config, staged['chosen']
    mean = results.mean_of
    last = lambda metric: results.mean_of_last(metric, 1)
    summary, rows = {'chosen_width': chosen, 'chosen_narrower_width': staged['narrower']}, []
    for width in config.widths:
        members = run.runs[f'width_{width}']
        test = results.mean_test(members)
        row = [mean(members, last('train_accuracy')), mean(members, last('val_accuracy')), test, mean(members, gap)]
        summary |= {f'width_{width}_test_accuracy': row[2], f'width_{width}_gap': row[3]}
        rows.append([width, *row])
    widest, narrowest = f'width_{max(config.widths)}', f'width_{min(config.widths)}'
    claims = [
        results.compare(
            'The generalization gap grows with the width: the widest net has a larger one than the narrowest',
            run.runs,
            widest,
            narrowest,
            'train_accuracy (last epoch) − test_accuracy',
            gap,
        ),
        results.compare(
            'Too many neurons hurt: the widest net tests worse than the narrower width validation prefers',
            run.runs,
            widest,
            f'width_{staged["narrower"]}',
            'test_accuracy',
            expected='less',
        ),
    ]
    figure = os.path.join(run.workdir, 'width.png')
    with report.figure(figure, 1, 2, figsize=(10, 4)) as (_, grid):
        axes = grid[0]
        widths = list(config.widths)
        for index, label in enumerate(('training', 'validation', 'test')):
            axes[0].plot(widths, [row[1 + index] for row in rows], 'o-', label=label)
        axes[1].plot(widths, [row[4] for row in rows], 'o-', color='C3')
        for axis, title in zip(axes, ('accuracy (mean over seeds)', 'generalization gap (train − test)')):
            axis.set_xscale('log', base=2)
            axis.set_xticks(widths, [str(width) for width in widths], minor=False)
            axis.minorticks_off()
            axis.set(xlabel='hidden units', title=title)
        axes[0].legend()
    summary['wall_seconds'] = run.wall_seconds()  # over every resumed segment
    return experiment.Report(
        'Too many neurons, too little data',
        summary,
        claims=claims,
        sections=[
            report.prose(__doc__, 1, 2),
            f'Seeds {list(config.seeds)}, {config.train_limit} training images, {config.epochs} epochs; validation '
            f'chose width {chosen} among all and {staged["narrower"]} among the narrower ones; wall time '
            f'{summary["wall_seconds"]:.0f} s.',
            report.markdown_table(['width', 'train accuracy', 'validation', 'test', 'gap'], rows),
        ],
        figures=[figure],
        curves=['train_loss', 'train_accuracy', 'val_accuracy'],
    )
