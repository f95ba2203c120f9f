"""The order in which the examples are presented: reshuffled every epoch, one fixed shuffle, sorted by class,
hardest first, easiest first (a curriculum) and class-balanced batches.

One MLP (784 → 100 → 100 → 10 ReLU, He init, SGD with momentum, batch 128), the same for every order; the orders
are index permutations computed on the device inside each epoch's program (nets.orders), the loss-ordered ones from
every member's own per-example losses under its current weights. Each order's seeds are one vmapped program. The
test set only draws curves (curves.png: mean over seeds, min–max band). Each claim pairs an order with `reshuffle`
over the seeds, by the test accuracy averaged over the last config.final_epochs epochs (the rate is constant, so one
epoch's number is noisy). `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import ml_collections

from nets import experiment, orders, report, results, tasks, validation

# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {
    'orders': validation.several(validation.name_in(orders.ORDERS)),
}

# The claims: (order, what it says against reshuffling every epoch, the expected sign of order − reshuffle).
CLAIMS = (
    ('fixed', 'One fixed shuffle, reused every epoch, is worse than reshuffling every epoch', 'less'),
    ('sorted_by_class', 'Batches sorted by class are far worse than shuffled ones', 'less'),
    ('class_balanced', 'Class-balanced batches (every class in every batch) beat plain reshuffling', 'greater'),
    ('hardest_first', 'Presenting the examples with the largest loss first beats reshuffling', 'greater'),
    ('easiest_first', 'A curriculum, easiest examples first, beats reshuffling', 'greater'),
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    # Ten confirmation seeds (reshuffle against one fixed shuffle is close); 0-2 developed the recipe.
    config = experiment.base_config(seeds=tuple(range(100, 110)), development_seeds=(0, 1, 2), checkpoint_every=5)
    config.epochs = 10
    config.model = tasks.model_config(hidden_widths=(100, 100), activation='relu', kernel_init='he_normal')
    config.optimizer = tasks.optimizer_config('momentum', 0.01, momentum=0.9)
    config.update(tasks.task_config())
    config.orders = tuple(orders.ORDERS)
    config.final_epochs = 3  # the claims' test accuracy: the mean over the last 3 epochs
    if experiment.is_quick(arg, 'presentation_order'):
        config.validation_size, config.train_limit, config.test_limit, config.seeds = 500, 1024, 500, (0, 1)
        config.development_seeds, config.final_epochs = (), 1  # a smoke run: it confirms nothing
        config.model.hidden_widths, config.epochs = (32,), 2
    return config


def stages(run) -> dict:
    """Trains every order, each with the test accuracy after every epoch (a curve that chooses nothing)."""
    _, test = run.data()
    for name in run.config.orders:
        task = run.task({'order': name})
        run.variant(name, task, test_curve=True)
    return {}


def summarize(run, staged: dict) -> experiment.Report:
    """Each order's mean final test accuracy, and a table of its range and its accuracy after the first epoch."""
    config = run.config
    summary = {f'accuracy_{name}': results.mean_test(members) for name, members in run.runs.items()}
    summary['wall_seconds'] = run.wall_seconds()  # over every resumed segment
    rows = []
    for name, members in run.runs.items():
        accuracies = [r['test']['accuracy'] for r in members.values()]
        after_one = results.mean_at(members, 'test_accuracy', 0)
        rows.append([name, summary[f'accuracy_{name}'], min(accuracies), max(accuracies), after_one])
    final = results.mean_of_last('test_accuracy', config.final_epochs)
    metric = f'test_accuracy, mean of the last {config.final_epochs} epochs'
    claims = [
        results.compare(text, run.runs, name, 'reshuffle', metric, final, expected=expected)
        for name, text, expected in CLAIMS
        if name in run.runs and 'reshuffle' in run.runs
    ]
    return experiment.Report(
        'The order of presentation',
        summary,
        claims=claims,
        sections=[
            report.prose(__doc__, 1, 2),
            f'Seeds {list(config.seeds)}, {config.epochs} epochs; wall time {summary["wall_seconds"]:.0f} s.',
            report.markdown_table(['order', 'final test accuracy (mean)', 'min', 'max', 'after epoch 1'], rows),
        ],
        curves=['train_loss', 'val_accuracy', 'test_accuracy'],
    )
