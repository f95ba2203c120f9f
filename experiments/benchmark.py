"""Benchmark: GEMM limit, the baseline network's epoch in our core and in its peers, and vmapped-sweep throughput.

Everything is timed on whatever backend is present. The baseline network trains on all 60,000 MNIST training
images (validation_size 0), so that one epoch is the ~240 GFLOP the issue's reference figures count.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nets import data as data_lib, experiment, report, results, tasks, train, validation

# The fields only this experiment has; nets.validation checks the shared ones (data, seeds, the task).
CONFIG_RULES = {
    'gemm_size': validation.count,
    'naive_members': validation.several(validation.count),
    'python_loop_epochs': validation.count,
    'repeats': validation.count,
    'sweep_members': validation.several(validation.count),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The full benchmark, or with 'quick' a seconds-scale version on a subset."""
    config = ml_collections.ConfigDict()
    config.dataset = 'mnist'
    config.train_limit = ml_collections.FieldReference(None, field_type=int)
    config.gemm_size = 2048
    config.repeats = 10
    # Each a task in the schema of nets.tasks.
    config.network = dict(
        model=tasks.model_config(hidden_widths=(512, 512), activation='relu', hidden_dropout=0.2),
        optimizer=tasks.optimizer_config('adam', 0.001),
        batch_size=128,
    )
    config.epochs = 6  # timed epochs of each variant; the median and the minimum are reported
    config.python_loop_epochs = 4
    # The init-comparison sweep of the initialization issue: 784-4x100 tanh-10, SGD lr 0.01, batch 64.
    config.sweep = dict(
        model=tasks.model_config(hidden_widths=(100, 100, 100, 100), activation='tanh'),
        optimizer=tasks.optimizer_config('sgd', 0.01),
        batch_size=64,
    )
    config.sweep_members = (1, 2, 5, 10, 20)
    config.naive_members = (1, 10)
    config.sweep_epochs = 2
    if experiment.is_quick(arg, 'benchmark'):
        config.train_limit, config.gemm_size, config.repeats = 4096, 256, 3
        config.epochs, config.python_loop_epochs, config.sweep_epochs = 2, 1, 2
        config.sweep_members, config.naive_members = (1, 4), (4,)
    return config


CORE = 'core: scan, gather by index, donated state'
CONTIGUOUS = 'scan over pre-shuffled contiguous slices'
PYTHON_LOOP = 'flax-example style: jitted step + Python loop'


def _median_seconds(function, repeats: int) -> float:
    jax.block_until_ready(function())
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(function())
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def gemm_gflops(size: int, repeats: int, dtype=jnp.float32) -> float:
    """GEMM throughput of XLA on a square matrix product, in GFLOP/s: the limit for dense training."""
    a, b = jax.random.normal(jax.random.PRNGKey(0), (2, size, size), dtype)
    matmul = jax.jit(jnp.matmul)
    return 2 * size**3 / _median_seconds(lambda: matmul(a, b), repeats) / 1e9


def network_gemm_epoch_seconds(widths: list[int], batch_size: int, steps: int, repeats: int) -> float:
    """An epoch of only the network's own matmuls (forward, weight and input gradients), scanned like training.

    This is the limit at the network's real shapes, which are less efficient than one large square GEMM.
    """
    keys = jax.random.split(jax.random.PRNGKey(0), len(widths))
    kernels = [0.01 * jax.random.normal(k, (n_in, n_out)) for k, n_in, n_out in zip(keys, widths[:-1], widths[1:])]
    inputs = jax.random.normal(keys[-1], (batch_size, widths[0]))

    def step(kernels, _):
        activations = [inputs]
        for kernel in kernels:
            activations.append(activations[-1] @ kernel)
        delta, gradients = activations[-1], []
        for layer in reversed(range(len(kernels))):
            gradients.append(activations[layer].T @ delta)
            if layer:  # the input needs no gradient
                delta = delta @ kernels[layer].T
        return [k - 1e-9 * g for k, g in zip(kernels, reversed(gradients))], None

    epoch = jax.jit(lambda kernels: jax.lax.scan(step, kernels, None, length=steps)[0])
    return _median_seconds(lambda: epoch(kernels), repeats)


def analytic_flops(widths: list[int], examples: int) -> float:
    """Training FLOPs per epoch: forward 2·MAC, backward 4·MAC, except the first layer needs no input gradient."""
    macs = [n_in * n_out for n_in, n_out in zip(widths[:-1], widths[1:])]
    return float(examples * (6 * sum(macs) - 2 * macs[0]))


def time_core(task, hparams, data, epochs, **fit_options) -> dict:
    """The core's epochs (train.fit: a scan that gathers each batch by index, the state donated)."""
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), data.train_images.shape[1:])
    _, history = train.fit(task, state, data, epochs=epochs, data_key=jax.random.PRNGKey(1), **fit_options)
    return {
        'epoch_seconds': results.steady_epoch_seconds(history),
        'compile_seconds': history[0]['compile_seconds'],
        'epoch_times': [row['seconds'] for row in history],
    }


def time_contiguous_slices(task, hparams, data, epochs) -> dict:
    """Variant: shuffle the whole training set once per epoch, then scan over contiguous batch slices."""
    steps = data.train_images.shape[0] // task.batch_size

    @functools.partial(jax.jit, donate_argnums=0)
    def epoch(state, images, labels, key):
        order = jax.random.permutation(key, images.shape[0])[: steps * task.batch_size]
        batches = (images[order].reshape(steps, task.batch_size, -1), labels[order].reshape(steps, -1))
        return jax.lax.scan(lambda s, batch: train.train_step(task, s, *batch), state, batches)

    state = train.init_state(task, hparams, jax.random.PRNGKey(0), data.train_images.shape[1:])
    started = time.perf_counter()
    compiled = epoch.lower(state, data.train_images, data.train_labels, jax.random.PRNGKey(0)).compile()
    compile_seconds = time.perf_counter() - started
    times = []
    for index in range(epochs):
        started = time.perf_counter()
        state, metrics = compiled(state, data.train_images, data.train_labels, jax.random.PRNGKey(index))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - started)
    return {
        'epoch_seconds': float(np.median(times[1:] or times)),
        'compile_seconds': compile_seconds,
        'epoch_times': times,
    }


def time_python_loop(task, hparams, images: np.ndarray, labels: np.ndarray, epochs) -> dict:
    """The flax-example style: a jitted step fed host batches from a Python loop."""
    step = jax.jit(functools.partial(train.train_step, task))
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), images.shape[1:])
    steps = images.shape[0] // task.batch_size
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    step.lower(state, images[: task.batch_size], labels[: task.batch_size]).compile()
    compile_seconds = time.perf_counter() - started
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        order = rng.permutation(images.shape[0])
        for index in range(steps):
            batch = order[index * task.batch_size : (index + 1) * task.batch_size]
            state, metrics = step(state, images[batch], labels[batch])
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - started)
    return {'epoch_seconds': float(np.median(times)), 'compile_seconds': compile_seconds, 'epoch_times': times}


def time_sweep(task, hparams, data, members: int, epochs: int, shuffle: str) -> dict:
    """The epochs of `members` copies of a task as one vmapped program, with a shared or per-member batch order."""
    keys = train.stack([jax.random.PRNGKey(seed) for seed in range(members)])
    state = train.init_members(task, [hparams] * members, keys, data.train_images.shape[1:])
    data_key = (
        jax.random.PRNGKey(0)
        if shuffle == 'shared'
        else train.stack([jax.random.PRNGKey(100 + seed) for seed in range(members)])
    )
    _, history = train.fit(task, state, data, epochs=epochs, data_key=data_key, members=True, shuffle=shuffle)
    epoch_seconds = results.steady_epoch_seconds(history)
    return {
        'members': members,
        'shuffle': shuffle,
        'epoch_seconds': epoch_seconds,
        'seconds_per_run_epoch': epoch_seconds / members,
        'compile_seconds': history[0]['compile_seconds'],
    }


def run(
    config, workdir: str, *, data_dir: str | None = None, cache_dir: str | None = None, resume: bool = False
) -> dict:
    """Measures everything, writes results.json and report.md; returns the summary."""
    del resume  # a benchmark is re-run, not resumed
    # Not stages for experiment.run: its standard report would add run tables, statistics and choices, all empty
    # for a benchmark that trains no variant; `measure` and `summarize` are shaped like stages and summarize.
    bench = experiment.Experiment(config, workdir, data_dir=data_dir, cache_dir=cache_dir)
    result = summarize(bench, measure(bench))
    results.write_results(workdir, result.summary, config.to_dict(), [0], runs={}, records=result.records)
    report.write_report(workdir, result.title, result.sections)
    return result.summary


def measure(run) -> dict:
    """Times the GEMM limit, the network's epoch in the core and in its peers, and the vmapped sweeps."""
    config, network = run.config, run.config.network
    # Compile seconds are measured cold: a hit in launch.py's persistent cache would hide them.
    jax.config.update('jax_enable_compilation_cache', False)
    # All of the training images (the epoch); one test image, since nothing is tested.
    splits = run.splits(validation_size=0, test_limit=1)
    data, _ = run.data(validation_size=0, test_limit=1)
    examples = data.train_images.shape[0] // network.batch_size * network.batch_size
    report.log(f'backend {jax.default_backend()} ({jax.devices()[0].device_kind}), {examples} examples an epoch')

    limit = gemm_gflops(config.gemm_size, config.repeats)
    limit_bf16 = gemm_gflops(config.gemm_size, config.repeats, jnp.bfloat16)
    report.log(f'GEMM {config.gemm_size}^3: fp32 {limit:.1f} GFLOP/s, bf16 {limit_bf16:.1f} GFLOP/s')
    task, hparams = tasks.build(network, data.train_images.shape[1:])
    widths = [784, *network.model.hidden_widths, 10]
    gemm_epoch = network_gemm_epoch_seconds(
        widths, network.batch_size, examples // network.batch_size, max(2, config.repeats // 3)
    )
    report.log(f"the network's matmuls alone: {gemm_epoch:.3f} s/epoch")
    state = train.init_state(task, hparams, jax.random.PRNGKey(0), (784,))
    batch = (data.train_images[: network.batch_size], data.train_labels[: network.batch_size])
    cost = jax.jit(functools.partial(train.train_step, task)).lower(state, *batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost

    systems = {
        CORE: lambda: time_core(task, hparams, data, config.epochs),
        CONTIGUOUS: lambda: time_contiguous_slices(task, hparams, data, config.epochs),
        PYTHON_LOOP: lambda: time_python_loop(
            task, hparams, data_lib.normalize(splits.train_images), splits.train_labels, config.python_loop_epochs
        ),
    }
    network_results = {}
    for name, time_system in systems.items():
        network_results[name] = timed = time_system()
        report.log(f'{name}: {timed["epoch_seconds"]:.3f} s/epoch, compile {timed["compile_seconds"]:.2f} s')

    sweep_task, sweep_hparams = tasks.build(config.sweep, data.train_images.shape[1:])
    sweeps = []
    for shuffle, member_counts in (('shared', config.sweep_members), ('per_member', config.naive_members)):
        for members in member_counts:
            sweeps.append(time_sweep(sweep_task, sweep_hparams, data, members, config.sweep_epochs, shuffle))
            report.log(f'sweep {shuffle} x{members}: {sweeps[-1]["seconds_per_run_epoch"]:.3f} s per run-epoch')
    return {
        'examples': examples,
        'limit': limit,
        'limit_bf16': limit_bf16,
        'flops': analytic_flops(widths, examples),
        'xla_flops': float(cost.get('flops', float('nan'))) * (examples // network.batch_size),
        'gemm_epoch': gemm_epoch,
        'network': network_results,
        'sweeps': sweeps,
    }


def summarize(run, staged: dict):
    """The headline speeds, the table of systems and the sweeps' scaling."""
    config, network_results, sweeps = run.config, staged['network'], staged['sweeps']
    limit, flops, gemm_epoch = staged['limit'], staged['flops'], staged['gemm_epoch']
    core = network_results[CORE]
    shared = {row['members']: row for row in sweeps if row['shuffle'] == 'shared'}
    widest = max(shared)
    summary = {
        'gemm_gflops': limit,
        'gemm_gflops_bf16': staged['limit_bf16'],
        'epoch_seconds': core['epoch_seconds'],
        'epoch_seconds_min': min(core['epoch_times']),
        'network_gemm_epoch_seconds': gemm_epoch,
        'fraction_of_network_gemm_limit': gemm_epoch / core['epoch_seconds'],
        'compile_seconds': core['compile_seconds'],
        'flops_per_epoch': flops,
        'xla_flops_per_epoch': staged['xla_flops'],
        'achieved_gflops': flops / core['epoch_seconds'] / 1e9,
        'fraction_of_gemm_limit': flops / core['epoch_seconds'] / 1e9 / limit,
        'gemm_limit_epoch_seconds': flops / limit / 1e9,
        'python_loop_epoch_seconds': network_results[PYTHON_LOOP]['epoch_seconds'],
        'contiguous_slices_epoch_seconds': network_results[CONTIGUOUS]['epoch_seconds'],
        f'sweep_seconds_per_run_epoch_{widest}': shared[widest]['seconds_per_run_epoch'],
        'sweep_seconds_per_run_epoch_1': shared[min(shared)]['seconds_per_run_epoch'],
        'examples_per_epoch': staged['examples'],
    }
    figure = _plot_sweeps(os.path.join(run.workdir, 'sweep_scaling.png'), sweeps)
    device = f'{jax.default_backend()} ({jax.devices()[0].device_kind}, {jax.device_count()} device(s))'
    systems = [
        [name, r['epoch_seconds'], min(r['epoch_times']), r['compile_seconds']] for name, r in network_results.items()
    ]
    systems += [
        ["the network's matmuls alone (scanned)", gemm_epoch, '', ''],
        [f'{config.gemm_size}^3 GEMM limit ({limit:.1f} GFLOP/s)', flops / limit / 1e9, '', ''],
    ]
    sections = [
        f'Backend: {device}. Baseline network 784-512-512-10 (ReLU, dropout 0.2), Adam, batch 128, '
        f'{staged["examples"]} examples an epoch: {flops / 1e9:.1f} GFLOP by count, '
        f'{staged["xla_flops"] / 1e9:.1f} GFLOP by XLA.',
        report.markdown_table(['system', 'median s/epoch', 'min s/epoch', 'compile seconds'], systems),
        f'The core reaches {summary["achieved_gflops"]:.1f} GFLOP/s: {summary["fraction_of_gemm_limit"]:.0%} '
        f"of the square-GEMM limit and {summary['fraction_of_network_gemm_limit']:.0%} of its own matmuls' "
        f'speed. bf16 GEMMs run at {staged["limit_bf16"]:.1f} GFLOP/s here, no faster than fp32, so fp32 stays.',
        '## vmapped sweeps: 784-4x100 tanh-10, SGD lr 0.01, batch 64',
        report.markdown_table(
            ['batch order', 'members', 'epoch seconds', 'seconds per run-epoch'],
            [[r['shuffle'], r['members'], r['epoch_seconds'], r['seconds_per_run_epoch']] for r in sweeps],
        ),
        f'![sweep scaling]({os.path.basename(figure)})',
    ]
    records = {
        'network': network_results,
        'sweeps': sweeps,
        'device': jax.devices()[0].device_kind,
        'backend': jax.default_backend(),
    }
    return experiment.Report('Benchmark', summary, sections, records=records)


def _plot_sweeps(path: str, sweeps: list[dict]) -> str:
    """Seconds per run-epoch against the members in one program, per batch order."""
    with report.figure(path, figsize=(5, 3.6)) as (_, axes):
        axis = axes[0][0]
        for shuffle in ('shared', 'per_member'):
            rows = [r for r in sweeps if r['shuffle'] == shuffle]
            if rows:
                members, seconds = [r['members'] for r in rows], [r['seconds_per_run_epoch'] for r in rows]
                axis.plot(members, seconds, 'o-', label=f'batch order: {shuffle}')
        axis.set(xlabel='members in one program', ylabel='seconds per run-epoch', xscale='log')
        axis.grid(alpha=0.3)
        axis.legend()
    return path
