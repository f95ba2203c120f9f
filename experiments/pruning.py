"""Pruning LeNet-300-100 on MNIST: five saliency criteria at equal sparsity, the lecture's prune–retrain–restore rule,
a lottery-ticket rewind, and neuron removal that really shrinks the network.

A dense LeNet-300-100 (784-300-100-10, ReLU, Adam) trains first, its seeds as one vmapped program. From it, each
criterion (exact loss increase, OBD, first-order Taylor, magnitude, random) prunes the kernels down a fixed ladder of
kept fractions, retraining between rungs; the test error at every rung gives the error-vs-compression curve. All
saliencies are measured on a validation batch, never on test. The exact criterion's ranking is the reference for the
Spearman correlations (on the dense nets). The lecture's rule then runs on its own: prune a fraction of what is
left, retrain, and if the validation error rose by more than a tolerance, restore the group and halve the step. The
3.6% mask of the best criterion (chosen on validation, as is every operating point) is rewound to the initial weights
and retrained (Frankle & Carbin 2019), beside the same mask with fresh random weights. Neuron removal cuts the
hidden layers by the exact unit saliency, retraining between cuts, and its inference speed-up is timed. `:quick` is
a seconds-scale version.
"""

from __future__ import annotations

import os

import jax
import matplotlib.ticker
import ml_collections
import numpy as np

from nets import experiment, masks, pruning, report, results, tasks, train, validation


def _neuron_widths_cut_the_trained_net(config) -> None:
    trained = tuple(config['model']['hidden_widths'])
    previous = trained
    for widths in config['neuron_widths']:
        if len(widths) != len(trained) or not all(1 <= w <= p for w, p in zip(widths, previous)):
            validation.refuse(
                'neuron_widths',
                widths,
                f'one width per hidden layer of the trained {trained}, from 1 to that of the cut before (cuts only '
                'remove units)',
            )
        previous = tuple(widths)


def _ticket_level_is_a_rung(config) -> None:
    if not any(np.isclose(config['ticket_level'], level) for level in config['keep_levels']):
        validation.refuse('ticket_level', config['ticket_level'], f'one of keep_levels {tuple(config["keep_levels"])}')


def _saliency_batch_fits_the_validation_split(config) -> None:
    if config['saliency_examples'] > config['validation_size']:
        validation.refuse(
            'saliency_examples', config['saliency_examples'], f'at most validation_size ({config["validation_size"]})'
        )


CONFIG_CHECKS = (_neuron_widths_cut_the_trained_net, _ticket_level_is_a_rung, _saliency_batch_fits_the_validation_split)
PUBLISHED = (  # (kept fraction, test error, source)
    (1 / 12, 0.0159, 'Han et al. 2015'),
    (1 / 56, 0.0199, 'Dynamic Network Surgery'),
    (1 / 68, 0.0192, 'Sparse Variational Dropout'),
)


# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {
    'criteria': validation.several(validation.name_in(pruning.CRITERIA)),
    'keep_levels': validation.several(validation.fraction),
    'lecture_rounds': validation.count,
    'lecture_step': validation.fraction,
    'lecture_tolerance': validation.number(0.0),
    'neuron_widths': validation.several(validation.several(validation.count, distinct=False)),
    'obd_probes': validation.count,
    'retrain_epochs': validation.count,
    'retrain_learning_rate': validation.positive,
    'saliency_examples': validation.count,
    'saliency_seed': validation.integer(0),
    'ticket_epochs': validation.count,
    'ticket_level': validation.fraction,
    'timing_repeats': validation.count,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    config = experiment.base_config(validation_size=5000)
    config.model = tasks.model_config(hidden_widths=(300, 100), activation='relu', kernel_init='glorot_uniform')
    config.optimizer = tasks.optimizer_config('adam', 1e-3, transforms=())
    config.update(tasks.task_config())
    config.epochs = 10  # the dense net's
    config.criteria = ('exact', 'obd', 'taylor', 'magnitude', 'random')  # of pruning.CRITERIA
    config.keep_levels = (0.5, 0.3, 0.18, 0.12, 0.08, 0.05, 0.036, 0.027, 0.02)  # fractions of the kernel weights
    config.retrain_epochs = 1  # between two rungs
    config.retrain_learning_rate = 5e-4
    config.saliency_examples = 256  # validation images that every saliency is measured on
    config.saliency_seed = 0
    config.obd_probes = 16
    config.ticket_level = 0.036  # Frankle & Carbin's LeNet-300-100 point
    config.ticket_epochs = 10
    config.lecture_rounds = 10  # the lecture's rule: prune a step of what is left, retrain, restore if worse
    config.lecture_step = 0.5
    config.lecture_tolerance = 0.002  # validation error allowed above the dense net's
    config.neuron_widths = ((200, 80), (150, 60), (100, 50), (70, 40), (50, 30), (35, 20))
    config.timing_repeats = 20
    if experiment.is_quick(arg, 'pruning'):
        config.train_limit, config.test_limit, config.validation_size = 1024, 500, 300
        config.seeds, config.epochs, config.ticket_epochs = (0, 1), 1, 1
        config.model.hidden_widths = (32, 16)
        config.keep_levels, config.ticket_level = (0.5, 0.2, 0.1), 0.1
        config.saliency_examples, config.obd_probes, config.lecture_rounds = 64, 4, 2
        config.neuron_widths, config.timing_repeats = ((24, 12), (16, 8)), 2
    return config


def _errors(task, state, images, labels) -> np.ndarray:
    return 1 - np.asarray(train.evaluate_members(task, state, images, labels, members=True)['accuracy'])


def stages(run) -> dict:
    """The dense net, every criterion's ladder, then the lecture's rule, the ticket and neuron removal with the
    criterion chosen on validation; returns what summarize reads."""
    config = run.config
    data, test = run.data()
    batch = (data.validation_images[: config.saliency_examples], data.validation_labels[: config.saliency_examples])
    task = run.task(after_update=masks.apply_masks)
    retrain_optimizer = {**config.optimizer.to_dict(), 'learning_rate': config.retrain_learning_rate}
    retrain = run.task({'optimizer': retrain_optimizer}, after_update=masks.apply_masks)
    retrain_task = retrain[0]
    staged = {}

    # The dense net; pruning.start keeps its initial weights as the rewind point.
    dense, _ = run.variant('dense', task, prepare_state=pruning.start)
    dense_val = _errors(task[0], dense, data.validation_images, data.validation_labels)
    staged['dense_test_error'] = float(_errors(task[0], dense, *test).mean())

    # Every criterion on the dense nets: the ladder's first scores, and the rankings compared with the exact one.
    key = jax.random.PRNGKey(config.saliency_seed)
    saliency = dict(images=batch[0], labels=batch[1], key=key, probes=config.obd_probes)
    scores = {c: pruning.member_saliency(c, task[0], dense, *batch, key, config.obd_probes) for c in config.criteria}
    staged['scores'] = scores
    staged['first_order'] = pruning.first_order_change(task[0], dense, *batch)

    # The ladder of kept fractions, one variant a criterion; its test error per rung is a curve that chooses nothing.
    test_error = lambda state: {'test_error': _errors(retrain_task, state, *test).tolist()}
    ladders, finals = {}, {}
    for criterion in config.criteria:
        hook = pruning.ladder_hook(
            retrain_task,
            criterion,
            config.keep_levels,
            epochs_per_rung=config.retrain_epochs,
            ticket_fraction=config.ticket_level,
            measure=test_error,
            **saliency,
        )
        finals[criterion], runs = run.variant(
            f'prune_{criterion}',
            retrain,
            epochs=len(config.keep_levels) * config.retrain_epochs,
            prepare_state=lambda s, c=criterion: pruning.ladder_start(dense, s, scores[c], config.keep_levels[0]),
            on_epoch_end=hook,
        )
        ladders[criterion] = pruning.ladder_rungs(runs)
    staged['ladders'] = ladders

    # Operating points and the best criterion, on validation: the most compressed rung whose mean validation error
    # is at most the dense net's (or 1.9%), then the lower mean validation error over the ladder.
    dense_error = float(dense_val.mean())
    points = {}
    for criterion in config.criteria:
        for name, bound in (('dense_error', dense_error), ('1_9_percent', 0.019)):
            points[criterion, name] = _operating_point(run, ladders[criterion], bound, f'{criterion} at {name}')
    best = run.select(
        'criterion',
        {
            c: (points[c, 'dense_error'][0], points[c, '1_9_percent'][0], -float(np.mean(ladders[c]['val'])))
            for c in config.criteria
        },
        metric='compression_within_val_error',
        note='(compression at <= the dense validation error, at <= 1.9%, minus the mean validation error)',
    )
    staged |= {'points': points, 'best': best}

    # The lecture's rule with the best criterion.
    hook = pruning.lecture_hook(
        retrain_task,
        best,
        rounds=config.lecture_rounds,
        epochs_per_round=config.retrain_epochs,
        reference_error=dense_val,
        tolerance=config.lecture_tolerance,
        **saliency,
    )
    staged['lecture'], _ = run.variant(
        'lecture',
        retrain,
        epochs=config.lecture_rounds * config.retrain_epochs,
        prepare_state=lambda s: pruning.lecture_start(dense, s, scores[best], config.lecture_step),
        on_epoch_end=hook,
    )

    # The lottery ticket: the best criterion's mask at the ticket level, rewound to the initial weights, and the
    # same mask with fresh random weights (seeds + 1000) as the control.
    ticket_masks = finals[best].pruning['ticket_masks']
    staged['ticket_kept_fraction'] = float(np.mean(pruning.kept_fraction(finals[best].replace(masks=ticket_masks))))
    for name, seeds in (('ticket_rewind', config.seeds), ('ticket_random_init', [s + 1000 for s in config.seeds])):
        start = lambda s, fresh=name != 'ticket_rewind': pruning.ticket_start(task[0], dense, s, ticket_masks, fresh)
        run.variant(name, task, seeds=seeds, epochs=config.ticket_epochs, prepare_state=start)

    # Neuron removal by the exact unit saliency, retraining between cuts; the cut is chosen on validation.
    hook = pruning.neuron_hook(
        retrain_task,
        config.neuron_widths,
        epochs_per_cut=config.retrain_epochs,
        images=batch[0],
        labels=batch[1],
        measure=test_error,
    )
    run.variant(
        'neurons',
        retrain,
        epochs=len(config.neuron_widths) * config.retrain_epochs,
        prepare_state=lambda s: pruning.neuron_start(retrain_task, dense, s, *batch, config.neuron_widths[0]),
        on_epoch_end=hook,
    )
    staged['neurons'] = pruning.neuron_cuts(
        run.runs['neurons'], *task, config.model.hidden_widths, config.neuron_widths, test[0], config.timing_repeats
    )
    within = {'dense': (True, -1)} | {
        '-'.join(map(str, row['widths'])): (row['val_error'] <= dense_error + config.lecture_tolerance, cut)
        for cut, row in enumerate(staged['neurons'])
    }
    staged['structured'] = run.select(
        'neuron widths',
        within,
        metric='cut_within_val_error',
        note='(within the tolerance of the dense validation error, cut)',
    )
    return staged


def _operating_point(run, rungs: dict, bound: float, what: str) -> tuple[float, float]:
    """(compression, mean test error) of the most compressed rung whose mean validation error is at most `bound`
    (1× and NaN when none is), chosen on validation and recorded."""
    kept, val, test = (np.mean(rungs[key], 0) for key in ('kept', 'val', 'test'))
    candidates = {'none': 1.0} | {f'{k:.4f}': 1 / k if v <= bound + 1e-9 else 0.0 for k, v in zip(kept, val)}
    chosen = run.select(f'rung of {what}', candidates, metric='compression_within_val_error')
    if chosen == 'none':
        return 1.0, float('nan')
    rung = [f'{k:.4f}' for k in kept].index(chosen)
    return float(1 / kept[rung]), float(test[rung])


def summarize(run, staged: dict):
    """The headline numbers, tables and figures."""
    config, runs, best = run.config, run.runs, staged['best']
    summary = {'dense_test_error': staged['dense_test_error']}
    scores = staged['scores']
    spearman = pruning.rank_agreement(scores)
    summary |= {f'spearman_{c}': value for c, value in spearman.items()}
    # Against the size of the change |ΔL| too: the signed change is dominated by −g·w, whose sign is noise.
    absolute = pruning.rank_agreement(scores, np.abs)
    summary |= {f'spearman_abs_{c}': value for c, value in absolute.items()}
    first_order = {'exact': scores['exact'], 'first_order': staged['first_order']}
    summary['spearman_exact_first_order'] = pruning.rank_agreement(first_order)['first_order']
    summary['best_criterion'] = best
    points = staged['points']
    for name in ('dense_error', '1_9_percent'):
        summary[f'compression_at_{name}'], summary[f'test_error_at_{name}'] = points[best, name]
    for name in ('dense_error', '1_9_percent'):
        for c in config.criteria:
            summary[f'compression_at_{name}_{c}'], summary[f'test_error_at_{name}_{c}'] = points[c, name]
    summary['lecture_compression'] = float(np.mean(1 / pruning.kept_fraction(staged['lecture'])))
    summary['lecture_test_error'] = results.mean_test(runs['lecture'], 'error')
    summary['lecture_restores'] = int(np.sum([row.get('restored', 0) for row in _rows(runs['lecture'])]))
    summary['ticket_random_init_error'] = results.mean_test(runs['ticket_random_init'], 'error')
    summary['ticket_error'] = results.mean_test(runs['ticket_rewind'], 'error')
    summary['ticket_kept_fraction'] = staged['ticket_kept_fraction']
    neurons = staged['neurons']
    widths = [row['widths'] for row in neurons]
    chosen = staged['structured']
    row = {'widths': config.model.hidden_widths, 'speedup': 1.0, 'test_error': summary['dense_test_error']}
    row = neurons[[('-'.join(map(str, w))) for w in widths].index(chosen)] if chosen != 'dense' else row
    summary['structured_speedup'] = row['speedup']
    summary['structured_widths'] = '-'.join(map(str, row['widths']))
    summary['structured_test_error'] = row['test_error']
    summary['wall_seconds'] = run.wall_seconds()  # over every resumed segment

    ladders = staged['ladders']
    figures = [
        plot_error_vs_kept(os.path.join(run.workdir, 'error_vs_kept.png'), config, ladders, summary),
        plot_layer_kept(os.path.join(run.workdir, 'layer_kept.png'), config, ladders),
        plot_scatter(os.path.join(run.workdir, 'saliency_scatter.png'), scores, spearman),
    ]
    return experiment.Report(
        'Pruning LeNet-300-100: saliency, restore, lottery ticket and neuron removal',
        summary,
        sections=[report.prose(__doc__, 1, 2), describe(config, summary, ladders, neurons)],
        figures=figures,
        records={'ladders': ladders, 'neurons': neurons},
        curves=['train_loss', 'val_accuracy'],
    )


def _rows(runs: dict) -> list[dict]:
    return [row for run in runs.values() for row in run['history']]


def describe(config, summary, ladders, neurons) -> str:
    criteria = list(ladders)
    header = ['kept fraction', 'compression'] + [f'{c} test error' for c in criteria]
    rows = [
        [f'{level:.3f}', f'{1 / level:.1f}×'] + [f'{np.mean(ladders[c]["test"], 0)[rung]:.4f}' for c in criteria]
        for rung, level in enumerate(config.keep_levels)
    ]
    neuron_rows = [
        [
            '-'.join(map(str, r['widths'])),
            r['weights'],
            f'{r["val_error"]:.4f}',
            f'{r["test_error"]:.4f}',
            f'{r["speedup"]:.2f}×',
        ]
        for r in neurons
    ]
    published = '; '.join(f'{source}: {error:.2%} at {1 / kept:.0f}×' for kept, error, source in PUBLISHED)
    return (
        f'784-{"-".join(map(str, config.model.hidden_widths))}-10, Adam {config.optimizer.learning_rate} for '
        f'{config.epochs} epochs (dense), then {config.retrain_epochs} epoch(s) at {config.retrain_learning_rate} '
        f'between rungs; seeds {list(config.seeds)}; saliency on {config.saliency_examples} validation images '
        f'(OBD: the Gauss–Newton diagonal). Dense test error {summary["dense_test_error"]:.4f}. '
        f'Published: {published}.\n\n'
        '## Test error at each rung (mean over seeds)\n\n' + report.markdown_table(header, rows) + '\n\n'
        'Operating points and the best criterion are chosen on validation: the most compressed rung whose mean '
        "validation error is at most the dense net's (or 1.9%), then its test error is read. "
        f'Best criterion: **{summary["best_criterion"]}**, {summary["compression_at_dense_error"]:.1f}× at ≤ the '
        f'dense validation error (test error {summary["test_error_at_dense_error"]:.4f}), '
        f'{summary["compression_at_1_9_percent"]:.1f}× at ≤ 1.9% validation error (test error '
        f'{summary["test_error_at_1_9_percent"]:.4f}). Spearman ρ against the exact '
        'saliency (dense nets): '
        + ', '.join(f'{c} {summary[f"spearman_{c}"]:.3f}' for c in criteria if c != 'exact')
        + '; against its size |ΔL|: '
        + ', '.join(f'{c} {summary[f"spearman_abs_{c}"]:.3f}' for c in criteria if c != 'exact')
        + f'. Spearman ρ between ΔL and its first-order term −g·w: {summary["spearman_exact_first_order"]:.3f}. '
        'Where that is high, the signed increase ranks by −g·w, whose sign on held-out images is noise: it removes '
        'first the weights with a large |g·w| of the "helpful" sign, which are important, and removing many of them '
        "at once is a large step on the saliency batch alone.\n\n## The lecture's rule\n\n"
        f'{config.lecture_rounds} rounds; a step of {config.lecture_step} of the remaining weights, halved after a '
        f'restore; tolerance {config.lecture_tolerance} validation error above the dense net. Final compression '
        f'{summary["lecture_compression"]:.1f}×, test error {summary["lecture_test_error"]:.4f}, '
        f'{summary["lecture_restores"]} restores over all seeds.\n\n'
        '## Lottery ticket\n\n'
        f'The {summary["best_criterion"]} mask at {summary["ticket_kept_fraction"]:.2%} of the weights, rewound to '
        f'the initial weights and retrained {config.ticket_epochs} epochs: test error '
        f'{summary["ticket_error"]:.4f} (dense {summary["dense_test_error"]:.4f}); the same mask with '
        f'fresh random weights: {summary["ticket_random_init_error"]:.4f}.\n\n'
        '## Neuron removal\n\n'
        + report.markdown_table(['widths', 'weights', 'val error', 'test error', 'inference speed-up'], neuron_rows)
        + f'\n\nChosen (the smallest within {config.lecture_tolerance} of the dense validation error): '
        f'{summary["structured_widths"]}, speed-up {summary["structured_speedup"]:.2f}× on the test set in one pass.'
    )


def plot_error_vs_kept(path, config, ladders, summary) -> str:
    """Test error against the kept fraction (log x), per criterion: seed mean with the min–max band."""
    with report.figure(path, figsize=(7, 4.5)) as (_, axes):
        axis = axes[0][0]
        for criterion, rungs in ladders.items():
            report.plot_band(axis, np.mean(rungs['kept'], 0), rungs['test'], criterion, marker='o')
        axis.axhline(summary['dense_test_error'], color='k', linestyle='--', label='dense')
        axis.axhline(0.019, color='gray', linestyle=':', label='1.9%')
        for kept, error, source in PUBLISHED:
            axis.scatter([kept], [error], marker='*', s=120, zorder=5, label=source)
        axis.set_xscale('log')
        axis.set_xticks(config.keep_levels, [f'{level:g}' for level in config.keep_levels], fontsize=7)
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set(xlabel='fraction of kernel weights kept', ylabel='test error')
        top = max(np.mean(r['test'], 0).max() for r in ladders.values() if r is not ladders.get('random'))
        axis.set_ylim(0, min(0.06, max(0.03, top * 1.1)))
        axis.grid(alpha=0.3, which='both')
        axis.legend(fontsize=7)
    return path


def plot_layer_kept(path, config, ladders) -> str:
    """The kept fraction of each layer against the overall one, per criterion."""
    with report.figure(path, 1, len(ladders), figsize=(3.2 * len(ladders), 3.2), sharey=True) as (_, axes):
        for axis, (criterion, rungs) in zip(axes[0], ladders.items()):
            for layer, values in rungs['layers'].items():
                axis.plot(np.mean(rungs['kept'], 0), np.mean(values, 0), marker='.', label=layer)
            axis.set(xscale='log', yscale='log', title=criterion, xlabel='kept overall')
            for ticks in (axis.xaxis, axis.yaxis):
                ticks.set_minor_formatter(matplotlib.ticker.NullFormatter())
            axis.grid(alpha=0.3, which='both')
        axes[0][0].set_ylabel('kept in the layer')
        axes[0][0].legend(fontsize=7)
    return path


def plot_scatter(path, scores, spearman, samples: int = 20000) -> str:
    """Exact saliency against each approximate one (seed 0's dense net, a random sample of kernel weights)."""
    exact = masks.kernel_vector(scores['exact'], 0)
    pick = np.random.default_rng(0).choice(exact.size, min(samples, exact.size), replace=False)
    others = [c for c in scores if c != 'exact']
    with report.figure(path, 1, len(others), figsize=(3.4 * len(others), 3.3)) as (_, axes):
        for axis, criterion in zip(axes[0], others):
            axis.scatter(masks.kernel_vector(scores[criterion], 0)[pick], exact[pick], s=1, alpha=0.3)
            axis.set_xscale('symlog', linthresh=1e-8)
            axis.set_yscale('symlog', linthresh=1e-8)
            axis.xaxis.set_major_locator(matplotlib.ticker.SymmetricalLogLocator(base=100, linthresh=1e-8))
            axis.set(xlabel=criterion, title=f'ρ = {spearman[criterion]:.3f}')
            axis.grid(alpha=0.3)
        axes[0][0].set_ylabel('exact loss increase')
    return path
