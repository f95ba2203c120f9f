"""Pruning LeNet-300-100 on MNIST: five saliency criteria at equal sparsity, the lecture's prune–retrain–restore rule,
a lottery-ticket rewind, and neuron removal that really shrinks the network.

A dense LeNet-300-100 (784-300-100-10, ReLU, Adam) trains first, its seeds as one vmapped program. From it, each
criterion (exact loss increase, OBD, first-order Taylor, magnitude, random) prunes the kernels down a fixed ladder of
kept fractions, retraining between rungs; the test error at every rung gives the error-vs-compression curve. All
saliencies are measured on a validation batch, never on test. The exact criterion's ranking is the reference for the
Spearman correlations (on the dense nets). The lecture's rule then runs on its own: prune a fraction of what is
left, retrain, and if the validation error rose by more than a tolerance, restore the group and halve the step. The
3.6% mask of the best criterion is rewound to the initial weights and retrained (Frankle & Carbin 2019), beside the
same mask with fresh random weights. Neuron removal cuts the hidden layers by the exact unit saliency, retraining
between cuts, and its inference speed-up is timed. `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import os
import time

import jax
import matplotlib.pyplot as plt
import matplotlib.ticker
import ml_collections
import numpy as np
import scipy.stats

from nets import data as data_lib, masks, pruning, report, runner, tasks, train

PUBLISHED = (  # (kept fraction, test error, source)
    (1 / 12, 0.0159, 'Han et al. 2015'),
    (1 / 56, 0.0199, 'Dynamic Network Surgery'),
    (1 / 68, 0.0192, 'Sparse Variational Dropout'),
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    config = ml_collections.ConfigDict()
    config.dataset = 'mnist'
    config.validation_size = 5000
    config.split_seed = 0
    config.train_limit = ml_collections.FieldReference(None, field_type=int)
    config.test_limit = ml_collections.FieldReference(None, field_type=int)
    config.seeds = (0, 1, 2)
    config.data_seed = 0
    config.checkpoint_every = 1
    config.model = tasks.model_config(hidden_widths=(300, 100), activation='relu', kernel_init='glorot_uniform')
    config.optimizer = tasks.optimizer_config('adam', 1e-3, transforms=())
    config.penalties = ()
    config.loss = 'softmax_cross_entropy'
    config.early_stopping = tasks.early_stopping_config()
    config.batch_size = 128
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
    if arg == 'quick':
        config.train_limit, config.test_limit, config.validation_size = 1024, 500, 300
        config.seeds, config.epochs, config.ticket_epochs = (0, 1), 1, 1
        config.model.hidden_widths = (32, 16)
        config.keep_levels, config.ticket_level = (0.5, 0.2, 0.1), 0.1
        config.saliency_examples, config.obd_probes, config.lecture_rounds = 64, 4, 2
        config.neuron_widths, config.timing_repeats = ((24, 12), (16, 8)), 2
    elif arg not in (None, ''):
        raise ValueError(f"unknown pruning config argument {arg!r}; allowed: '' or 'quick'")
    return config


def _errors(task, state, images, labels) -> np.ndarray:
    return 1 - np.asarray(train.evaluate_members(task, state, images, labels, members=True)['accuracy'])


def run(config, workdir: str, *, data_dir: str | None = None, cache_dir: str | None = None, resume: bool = False):
    """Dense net, criteria ladder, lecture rule, ticket and neuron removal; writes the report; returns the summary."""
    started = time.perf_counter()
    splits = data_lib.load_splits(config.dataset, data_dir=data_dir, cache_dir=cache_dir,
                                  validation_size=config.validation_size, split_seed=config.split_seed,
                                  train_limit=config.train_limit, test_limit=config.test_limit)  # fmt: skip
    data, test = runner.device_data(splits)
    batch = (data.validation_images[: config.saliency_examples], data.validation_labels[: config.saliency_examples])
    input_shape = runner.input_shape(config.dataset)
    task, hparams = tasks.build(config, input_shape, after_update=masks.apply_masks)
    retrain_optimizer = {**config.optimizer.to_dict(), 'learning_rate': config.retrain_learning_rate}
    retrain_task, retrain_hparams = tasks.build(
        {**config.to_dict(), 'optimizer': retrain_optimizer}, input_shape, after_update=masks.apply_masks
    )
    members = runner.grid(config.seeds)
    variant = lambda name, task_, hparams_, **kwargs: runner.run_variant(
        workdir, config, name, task_, hparams_, kwargs.pop('members', members), data, test, resume=resume, **kwargs
    )
    runs, summary = {}, {}

    # The dense net; pruning.start keeps its initial weights as the rewind point.
    dense, runs['dense'] = variant('dense', task, hparams, prepare_state=pruning.start)
    dense_test = _errors(task, dense, *test)
    dense_val = _errors(task, dense, data.validation_images, data.validation_labels)
    summary['dense_test_error'] = float(dense_test.mean())

    # Every criterion on the dense nets, against the exact one.
    key = jax.random.PRNGKey(config.saliency_seed)
    saliency = dict(images=batch[0], labels=batch[1], key=key, probes=config.obd_probes)
    test_error = lambda state: {'test_error': _errors(retrain_task, state, *test).tolist()}
    dense_scores = {c: pruning.member_saliency(c, task, dense, *batch, key, config.obd_probes) for c in config.criteria}
    spearman = spearman_correlations(dense_scores, dense)
    summary |= {f'spearman_{c}': value for c, value in spearman.items()}
    # Against the size of the change |ΔL| too: the signed change is dominated by −g·w, whose sign is noise.
    summary |= {f'spearman_abs_{c}': value for c, value in spearman_correlations(dense_scores, dense, np.abs).items()}
    first_order = {'exact': dense_scores['exact'], 'first_order': first_order_change(task, dense, *batch)}
    summary['spearman_exact_first_order'] = spearman_correlations(first_order, dense)['first_order']

    # The ladder of kept fractions, one variant a criterion.
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
        state, runs[f'prune_{criterion}'] = variant(
            f'prune_{criterion}',
            retrain_task,
            retrain_hparams,
            epochs=len(config.keep_levels) * config.retrain_epochs,
            prepare_state=lambda s, c=criterion: pruning.ladder_start(dense, s, dense_scores[c], config.keep_levels[0]),
            on_epoch_end=hook,
        )
        ladders[criterion], finals[criterion] = ladder(config, runs[f'prune_{criterion}']), state
    compression = {c: _compression(ladders[c], summary['dense_test_error']) for c in config.criteria}
    compression_19 = {c: _compression(ladders[c], 0.019) for c in config.criteria}
    best = max(config.criteria, key=lambda c: (compression[c], compression_19[c], -np.mean(ladders[c]['test'])))
    summary['best_criterion'] = best
    summary['compression_at_dense_error'] = compression[best]
    summary['compression_at_1_9_percent'] = compression_19[best]
    summary |= {f'compression_at_dense_error_{c}': compression[c] for c in config.criteria}
    summary |= {f'compression_at_1_9_percent_{c}': compression_19[c] for c in config.criteria}

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
    lecture, runs['lecture'] = variant(
        'lecture',
        retrain_task,
        retrain_hparams,
        epochs=config.lecture_rounds * config.retrain_epochs,
        prepare_state=lambda s: pruning.lecture_start(dense, s, dense_scores[best], config.lecture_step),
        on_epoch_end=hook,
    )
    lecture_test = np.array([r['test']['accuracy'] for r in runs['lecture'].values()])
    summary['lecture_compression'] = float(np.mean(1 / pruning.kept_fraction(lecture)))
    summary['lecture_test_error'] = float(np.mean(1 - lecture_test))
    summary['lecture_restores'] = int(np.sum([row.get('restored', 0) for row in _rows(runs['lecture'])]))

    # The lottery ticket: the best criterion's mask at the ticket level, rewound to the initial weights, and the
    # same mask with fresh random weights (seeds + 1000) as the control.
    ticket_masks = finals[best].pruning['ticket_masks']
    for name, seeds in (('ticket_rewind', config.seeds), ('ticket_random_init', [s + 1000 for s in config.seeds])):
        start = lambda s, fresh=name != 'ticket_rewind': pruning.ticket_start(task, dense, s, ticket_masks, fresh)
        _, runs[name] = variant(
            name, task, hparams, members=runner.grid(seeds), epochs=config.ticket_epochs, prepare_state=start
        )
        summary[f'{name}_error'] = float(np.mean([1 - r['test']['accuracy'] for r in runs[name].values()]))
    summary['ticket_error_3_6_percent'] = summary.pop('ticket_rewind_error')
    summary['ticket_kept_fraction'] = float(np.mean(pruning.kept_fraction(finals[best].replace(masks=ticket_masks))))

    # Neuron removal by the exact unit saliency, retraining one epoch between cuts.
    dense_widths = tuple(config.model.hidden_widths)
    hook = pruning.neuron_hook(
        retrain_task,
        config.neuron_widths,
        epochs_per_cut=config.retrain_epochs,
        images=batch[0],
        labels=batch[1],
        measure=test_error,
    )
    _, runs['neurons'] = variant(
        'neurons',
        retrain_task,
        retrain_hparams,
        epochs=len(config.neuron_widths) * config.retrain_epochs,
        prepare_state=lambda s: pruning.neuron_start(retrain_task, dense, s, *batch, config.neuron_widths[0]),
        on_epoch_end=hook,
    )
    neurons = neuron_table(config, runs['neurons'], task, hparams, input_shape, test[0])
    chosen = [row for row in neurons if row['val_error'] <= dense_val.mean() + config.lecture_tolerance]
    chosen = (
        chosen[-1] if chosen else {'widths': dense_widths, 'speedup': 1.0, 'test_error': summary['dense_test_error']}
    )
    summary['structured_speedup'] = chosen['speedup']
    summary['structured_widths'] = '-'.join(map(str, chosen['widths']))
    summary['structured_test_error'] = chosen['test_error']
    summary['wall_seconds'] = time.perf_counter() - started

    figures = [
        plot_error_vs_kept(os.path.join(workdir, 'error_vs_kept.png'), config, ladders, summary),
        plot_layer_kept(os.path.join(workdir, 'layer_kept.png'), config, ladders),
        plot_scatter(os.path.join(workdir, 'saliency_scatter.png'), dense_scores, spearman),
    ]
    report.write_run(workdir, 'Pruning LeNet-300-100: saliency, restore, lottery ticket and neuron removal',
                     summary=summary, config=config.to_dict(), runs=runs, curves=['train_loss', 'val_accuracy'],
                     ladders=ladders, neurons=neurons,
                     sections=[__doc__.split('\n\n')[1].replace('\n', ' '),
                               describe(config, summary, ladders, neurons)],
                     extra_sections=[f'![{os.path.splitext(os.path.basename(f))[0]}]({os.path.basename(f)})'
                                     for f in figures])  # fmt: skip
    return summary


def _rows(runs: dict) -> list[dict]:
    return [row for run in runs.values() for row in run['history']]


def spearman_correlations(scores: dict, dense, reference=lambda exact: exact) -> dict[str, float]:
    """Spearman's ρ between each criterion's kernel scores and `reference` of the exact ones, per member, mean over
    members."""
    exact = jax.tree.map(reference, scores['exact'])
    flags = jax.tree.leaves(masks.param_mask(masks.KERNELS)(dense.params))
    flat = lambda tree, i: np.concatenate(
        [np.asarray(leaf[i]).reshape(-1) for leaf, flag in zip(jax.tree.leaves(tree), flags) if flag]
    )
    count = len(jax.tree.leaves(dense.params)[0])
    return {
        c: float(np.mean([scipy.stats.spearmanr(flat(exact, i), flat(scores[c], i)).statistic for i in range(count)]))
        for c in scores
        if c != 'exact'
    }


def first_order_change(task, state, images, labels):
    """−g·w for every weight of every member: the first-order term of the loss change when w alone is zeroed."""

    def one(member):
        model = task.model(member.hparams, member.params)
        loss_of = lambda params: task.loss.value(model.apply({'params': params}, images, train=False), labels)
        return jax.tree.map(lambda w, g: -w * g, member.params, jax.grad(loss_of)(member.params))

    return jax.jit(jax.vmap(one))(state)


def ladder(config, runs: dict) -> dict:
    """The rungs of a criterion's variant: kept fraction, validation and test error, per-layer kept (seeds ×
    rungs)."""
    rows = [[row for row in run['history'] if 'rung' in row] for run in runs.values()]
    pick = lambda key: np.array([[row[key] for row in member] for member in rows], dtype=np.float64).tolist()
    layers = [key for key in rows[0][0] if key.startswith('kept_') and key != 'kept_fraction']
    return {
        'kept': pick('kept_fraction'),
        'test': pick('test_error'),
        'val': (1 - np.array(pick('val_accuracy'))).tolist(),
        'layers': {key[len('kept_') :]: pick(key) for key in layers},
    }


def _compression(rungs: dict, error: float) -> float:
    """The highest compression (1 / mean kept fraction) among the rungs whose mean test error is ≤ `error`."""
    kept, test = np.mean(rungs['kept'], 0), np.mean(rungs['test'], 0)
    good = test <= error + 1e-9
    return float(1 / kept[good].min()) if good.any() else 1.0


def inference_seconds(task, hparams, widths, input_shape, images, repeats: int) -> float:
    """The best of `repeats` timings of one jitted evaluation-mode pass of a net of `widths` over `images`."""
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), input_shape, {'hidden_widths': tuple(widths)})
    model = task.model(hparams, state.params)
    apply = jax.jit(lambda params, x: model.apply({'params': params}, x, train=False))
    jax.block_until_ready(apply(state.params, images))
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        jax.block_until_ready(apply(state.params, images))
        times.append(time.perf_counter() - begin)
    return float(min(times))


def neuron_table(config, runs, task, hparams, input_shape, images) -> list[dict]:
    """Per cut: the widths, kept weights, mean validation and test error, and the timed inference speed-up."""
    rows = [[row for row in run['history'] if 'cut' in row] for run in runs.values()]
    dense_time = inference_seconds(task, hparams, config.model.hidden_widths, input_shape, images,
                                   config.timing_repeats)  # fmt: skip
    table = []
    for cut, widths in enumerate(config.neuron_widths):
        sizes = (input_shape[0], *widths, 10)
        seconds = inference_seconds(task, hparams, widths, input_shape, images, config.timing_repeats)
        table.append({
            'widths': list(widths),
            'weights': int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))),
            'val_error': float(np.mean([1 - member[cut]['val_accuracy'] for member in rows])),
            'test_error': float(np.mean([member[cut]['test_error'] for member in rows])),
            'seconds': seconds,
            'speedup': dense_time / seconds,
        })  # fmt: skip
    return table


def describe(config, summary, ladders, neurons) -> str:
    criteria = list(ladders)
    header = ['kept fraction', 'compression'] + [f'{c} test error' for c in criteria]
    rows = [
        [f'{level:.3f}', f'{1 / level:.1f}×'] + [f'{np.mean(ladders[c]["test"], 0)[rung]:.4f}' for c in criteria]
        for rung, level in enumerate(config.keep_levels)
    ]
    neuron_rows = [
        ['-'.join(map(str, r['widths'])), r['weights'], f'{r["val_error"]:.4f}', f'{r["test_error"]:.4f}',
         f'{r["speedup"]:.2f}×'] for r in neurons
    ]  # fmt: skip
    published = '; '.join(f'{source}: {error:.2%} at {1 / kept:.0f}×' for kept, error, source in PUBLISHED)
    return (
        f'784-{"-".join(map(str, config.model.hidden_widths))}-10, Adam {config.optimizer.learning_rate} for '
        f'{config.epochs} epochs (dense), then {config.retrain_epochs} epoch(s) at {config.retrain_learning_rate} '
        f'between rungs; seeds {list(config.seeds)}; saliency on {config.saliency_examples} validation images '
        f'(OBD: the Gauss–Newton diagonal). Dense test error {summary["dense_test_error"]:.4f}. '
        f'Published: {published}.\n\n'
        '## Test error at each rung (mean over seeds)\n\n' + report.markdown_table(header, rows) + '\n\n'
        f'Best criterion: **{summary["best_criterion"]}**, {summary["compression_at_dense_error"]:.1f}× at ≤ the '
        f'dense error, {summary["compression_at_1_9_percent"]:.1f}× at ≤ 1.9%. Spearman ρ against the exact '
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
        f'{summary["ticket_error_3_6_percent"]:.4f} (dense {summary["dense_test_error"]:.4f}); the same mask with '
        f'fresh random weights: {summary["ticket_random_init_error"]:.4f}.\n\n'
        '## Neuron removal\n\n'
        + report.markdown_table(['widths', 'weights', 'val error', 'test error', 'inference speed-up'], neuron_rows)
        + f'\n\nChosen (the smallest within {config.lecture_tolerance} of the dense validation error): '
        f'{summary["structured_widths"]}, speed-up {summary["structured_speedup"]:.2f}× on the test set in one pass.'
    )


def plot_error_vs_kept(path, config, ladders, summary) -> str:
    """Test error against the kept fraction (log x), per criterion: seed mean with the min–max band."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for criterion, rungs in ladders.items():
        kept, test = np.mean(rungs['kept'], 0), np.array(rungs['test'])
        axis.plot(kept, test.mean(0), marker='o', label=criterion)
        axis.fill_between(kept, test.min(0), test.max(0), alpha=0.15)
    axis.axhline(summary['dense_test_error'], color='k', linestyle='--', label='dense')
    axis.axhline(0.019, color='gray', linestyle=':', label='1.9%')
    for kept, error, source in PUBLISHED:
        axis.scatter([kept], [error], marker='*', s=120, zorder=5, label=source)
    axis.set_xscale('log')
    axis.set_xticks(config.keep_levels, [f'{level:g}' for level in config.keep_levels], fontsize=7)
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.set_xlabel('fraction of kernel weights kept')
    axis.set_ylabel('test error')
    top = max(np.mean(r['test'], 0).max() for r in ladders.values() if r is not ladders.get('random'))
    axis.set_ylim(0, min(0.06, max(0.03, top * 1.1)))
    axis.grid(alpha=0.3, which='both')
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_layer_kept(path, config, ladders) -> str:
    """The kept fraction of each layer against the overall one, per criterion."""
    figure, axes = plt.subplots(1, len(ladders), figsize=(3.2 * len(ladders), 3.2), sharey=True, squeeze=False)
    for axis, (criterion, rungs) in zip(axes[0], ladders.items()):
        kept = np.mean(rungs['kept'], 0)
        for layer, values in rungs['layers'].items():
            axis.plot(kept, np.mean(values, 0), marker='.', label=layer)
        axis.set_xscale('log')
        axis.set_yscale('log')
        for ticks in (axis.xaxis, axis.yaxis):
            ticks.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_title(criterion)
        axis.set_xlabel('kept overall')
        axis.grid(alpha=0.3, which='both')
    axes[0][0].set_ylabel('kept in the layer')
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_scatter(path, scores, spearman, samples: int = 20000) -> str:
    """Exact saliency against each approximate one (seed 0's dense net, a random sample of kernel weights)."""
    flags = jax.tree.leaves(masks.param_mask(masks.KERNELS)(scores['exact']))
    flat = lambda tree: np.concatenate(
        [np.asarray(leaf[0]).reshape(-1) for leaf, flag in zip(jax.tree.leaves(tree), flags) if flag]
    )
    exact = flat(scores['exact'])
    pick = np.random.default_rng(0).choice(exact.size, min(samples, exact.size), replace=False)
    others = [c for c in scores if c != 'exact']
    figure, axes = plt.subplots(1, len(others), figsize=(3.4 * len(others), 3.3), squeeze=False)
    for axis, criterion in zip(axes[0], others):
        axis.scatter(flat(scores[criterion])[pick], exact[pick], s=1, alpha=0.3)
        axis.set_xscale('symlog', linthresh=1e-8)
        axis.set_yscale('symlog', linthresh=1e-8)
        axis.xaxis.set_major_locator(matplotlib.ticker.SymmetricalLogLocator(base=100, linthresh=1e-8))
        axis.set_xlabel(criterion)
        axis.set_title(f'ρ = {spearman[criterion]:.3f}')
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel('exact loss increase')
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
