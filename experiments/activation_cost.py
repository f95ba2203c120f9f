"""The cost of an activation: "e^x is expensive to compute; ReLU is cheap" (the lecture).

Two nets, each with every activation in turn: the deep net of experiments/activations (784 → 10×100 → 10) and a
wide one (784 → 3×1024 → 10), batch 128, SGD. A training epoch of config.steps steps (one compiled lax.scan of
nets.train.train_step, as the core trains) and an inference pass over config.inference_examples images are compiled
once per activation, then timed in config.rounds rounds; every round times every activation in turn, so that the
machine's load falls on all of them alike. A claim pairs an activation's time with ReLU's by round: the mean of the
ratio of their times, with its 95% t interval over the rounds, against 1. The inputs are uniform noise in [0, 1] of
MNIST's shape (the cost of e^x does not depend on the values). The timings are of the machine that results.json
names; a GPU gives other ratios. `:quick` is a seconds-scale version.
"""

from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np

from nets import experiment, report, results, tasks, train, validation

# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {
    'nets': lambda path, value: [validation.several(validation.count, distinct=False)(path, w) for w in value],
    'activations': validation.several(validation.name_in(('relu', 'leaky_relu', 'sigmoid', 'tanh'))),
    **{name: validation.count for name in ('rounds', 'inference_examples')},
}
BASE = 'relu'

DEVELOPMENT = 'A timing of what the lecture says, declared before its one run: nothing was chosen or tuned.'


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full experiment, or with 'quick' a seconds-scale one."""
    config = experiment.base_config(seeds=(0,), development_seeds=(), checkpoint_every=1)
    config.model = tasks.model_config(hidden_widths=(100,) * 10)
    config.optimizer = tasks.optimizer_config('sgd', 0.01)
    config.update(tasks.task_config(batch_size=128))
    config.nets = ((100,) * 10, (1024,) * 3)
    config.activations = ('relu', 'leaky_relu', 'sigmoid', 'tanh')
    config.steps = 100  # a timed epoch
    config.inference_examples = 10_000
    config.rounds = 20
    if experiment.is_quick(arg, 'activation_cost'):
        config.nets, config.steps, config.inference_examples, config.rounds = ((16, 16),), 5, 256, 3
    return config


def programs(run, widths, activation: str, batches, test) -> tuple:
    """The compiled training epoch over `batches` ([steps, batch, ...] images and labels) and inference pass over
    `test` (images and labels) of one net and activation, each with its arguments."""
    model = {**run.config.model.to_dict(), 'hidden_widths': tuple(widths), 'activation': activation}
    task, hparams = run.task({'model': model})
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), run.input_shape)
    epoch = jax.jit(lambda s, x, y: jax.lax.scan(lambda s, batch: train.train_step(task, s, *batch), s, (x, y)))
    infer = jax.jit(lambda s, x, y: train.evaluate(task, s, x, y))
    return (
        (epoch.lower(state, *batches).compile(), (state, *batches)),
        (infer.lower(state, *test).compile(), (state, *test)),
    )


def seconds(compiled, arguments) -> float:
    started = time.perf_counter()
    jax.block_until_ready(compiled(*arguments))
    return time.perf_counter() - started


def run(config, workdir: str, *, data_dir: str | None = None, cache_dir: str | None = None, resume: bool = False):
    """Times every net and activation, writes results.json (with the claims) and report.md; returns the summary."""
    del resume  # a timing is re-run, not resumed
    started = time.perf_counter()
    bench = experiment.Experiment(config, workdir, data_dir=data_dir, cache_dir=cache_dir)
    rng = np.random.default_rng(0)
    noise = lambda *shape: (
        jax.device_put(rng.uniform(size=(*shape, *bench.input_shape)).astype(np.float32)),
        jax.device_put(rng.integers(0, 10, shape).astype(np.int32)),
    )
    batches, test = noise(config.steps, config.batch_size), noise(config.inference_examples)
    steps = config.steps
    times, claims, rows, summary = {}, [], [], {}
    for widths in config.nets:
        net = 'x'.join(map(str, widths))
        compiled = {a: programs(bench, widths, a, batches, test) for a in config.activations}
        for part in ('train', 'infer'):
            for a in config.activations:
                seconds(*compiled[a][part == 'infer'])  # a warm-up run, not timed
        for part in ('train', 'infer'):
            measured = {a: [] for a in config.activations}
            for _ in range(config.rounds):
                for a in config.activations:
                    measured[a].append(seconds(*compiled[a][part == 'infer']))
            times[f'{net}/{part}'] = measured
            for a in config.activations:
                median = float(np.median(measured[a]))
                summary[f'{net}_{part}_{a}_seconds'] = median
                rows.append([net, part, a, median * 1e3, median / float(np.median(measured[BASE]))])
                if a == BASE:
                    continue
                ratios = {r: t / base for r, (t, base) in enumerate(zip(measured[a], measured[BASE]))}
                what = f'a training epoch of {steps} steps' if part == 'train' else 'an inference pass'
                claims.append(
                    results.claim(
                        f'{a} costs more than ReLU: {what} of the {net} net takes longer',
                        f'{part} seconds, ratio to relu',
                        [a, BASE],
                        ratios,
                        1.0,
                    )
                )
    summary['wall_seconds'] = time.perf_counter() - started
    machine = ', '.join(f'{key} {value}' for key, value in results.machine().items())
    sections = [
        report.prose(__doc__, 1, 2),
        f'Machine: {machine}. {config.rounds} rounds; wall time {summary["wall_seconds"]:.0f} s.',
        report.markdown_table(['net', 'part', 'activation', 'median ms', 'median / relu'], rows),
        *report.claims_table(claims),
    ]
    records = {'claims': claims, 'times': times}
    results.write_results(workdir, summary, config.to_dict(), list(config.seeds), runs={}, records=records)
    report.write_report(workdir, 'The cost of an activation', sections)
    return summary
