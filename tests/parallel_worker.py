"""Run by tests/test_parallel.py in a subprocess with 8 forced host devices: trains each case once replicated over a
data mesh and once on a single device, and saves the results to compare.

Usage: python tests/parallel_worker.py OUTPUT_DIR (XLA_FLAGS and JAX_PLATFORMS must be set by the caller).
"""

import json
import os
import sys

import jax
import numpy as np

# Run as a script, so the repo root must be put on the path before `nets` can be imported.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nets import parallel, tasks, train

NUM_TRAIN, NUM_VALIDATION, BATCH, EPOCHS = 1024, 256, 64, 2
SETTINGS = [
    {'optimizer.learning_rate': 0.05, 'model.hidden_dropout': 0.1},
    {'optimizer.learning_rate': 0.1, 'model.hidden_dropout': 0.2},
]
# case -> (members, shuffle, batch axis of a gathered batch)
CASES = {
    'single': (False, 'shared', 0),
    'sweep_shared': (True, 'shared', 0),
    'sweep_per_member': (True, 'per_member', 1),
}


def make_data() -> train.Data:
    """Labels from a fixed random linear teacher on Gaussian inputs: learnable, so the two runs move the same way."""
    rng = np.random.default_rng(42)  # numpy, not jax.random: the same data without compiling eager ops
    images = rng.standard_normal((NUM_TRAIN + NUM_VALIDATION, 784), dtype=np.float32)
    labels = np.argmax(images @ rng.standard_normal((784, 10), dtype=np.float32), -1).astype(np.int32)
    return train.Data(images[:NUM_TRAIN], labels[:NUM_TRAIN], images[NUM_TRAIN:], labels[NUM_TRAIN:])


def make_task() -> tuple[train.Task, dict]:
    # SGD with momentum rather than Adam: the bias of a dense layer that batch norm follows gets a gradient that is
    # zero up to rounding, and Adam's 1/(sqrt(v) + 1e-7) would turn that rounding noise into steps of learning-rate
    # size, so that bias (and the running mean after it) would differ between any two summation orders.
    model = {'name': 'mlp', 'hidden_widths': (32,), 'hidden_dropout': 0.1, 'batch_norm': 'before'}
    return tasks.build(
        {'model': model, 'optimizer': {'name': 'momentum', 'learning_rate': 0.05}, 'batch_size': BATCH}, (784,)
    )


def initial_states(task: train.Task, defaults: dict) -> dict[bool, train.TrainState]:
    """The initial state of a single run and of a sweep (by `members`), on the host to copy from for every run."""
    settings = [tasks.member_hparams(defaults, overrides) for overrides in SETTINGS]
    single = jax.jit(lambda: train.init_state(task, settings[0], jax.random.PRNGKey(0), (784,)))
    keys = train.stack([jax.random.PRNGKey(seed) for seed in range(len(SETTINGS))])
    sweep = train.init_members(task, settings, keys, (784,))
    return jax.device_get({False: single(), True: sweep})


def data_key(members: bool, shuffle: str) -> np.ndarray:
    """One key for a shared batch order, one a member for per-member orders."""
    if members and shuffle == 'per_member':
        return np.stack([np.asarray(jax.random.PRNGKey(100 + seed)) for seed in range(len(SETTINGS))])
    return np.asarray(jax.random.PRNGKey(5))


def flat(prefix: str, tree) -> dict[str, np.ndarray]:
    """A pytree's leaves as host arrays under `prefix` + their path, the form np.savez takes."""
    return {
        prefix + jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def epoch_hlo(task: train.Task, state: train.TrainState, data: train.Data, order_key, **kwargs) -> str:
    """The partitioned HLO of the epoch program as fit builds it, compiled apart so that the test can read it."""
    program = jax.jit(lambda s, d, k: train.run_epoch(task, s, d, k, **kwargs))
    return program.lower(state, data, order_key).compile().as_text()


def helper_facts(mesh: jax.sharding.Mesh) -> dict[str, bool]:
    """replicate on a jit output committed to one device, on numpy and on a Python number; batch_constraint's spec."""
    tree = {'committed': jax.jit(lambda: jax.numpy.arange(4.0))(), 'numpy': np.ones((2, 3)), 'number': 3}
    placed = parallel.replicate(tree, mesh)
    batch = jax.jit(parallel.batch_constraint(mesh, batch_axis=1))(np.zeros((2, BATCH, 3), np.float32))
    return {
        'replicated': all(
            leaf.sharding == parallel.replicated(mesh) and np.array_equal(leaf, tree[name])
            for name, leaf in placed.items()
        ),
        'batch_spec_is_none_data': batch.sharding.spec == jax.sharding.PartitionSpec(None, parallel.DATA_AXIS),
        'batch_split': {shard.data.shape for shard in batch.addressable_shards} == {(2, BATCH // mesh.size, 3)},
    }


def main(output_dir: str) -> None:
    """Trains every case sharded and alone; writes results.npz (params, batch_stats, history) and meta.json."""
    (task, defaults), data = make_task(), make_data()
    starts = initial_states(task, defaults)
    mesh = parallel.data_mesh()
    parallel.check_batch_size(BATCH, mesh)
    mesh_data, single_data = parallel.replicate(data, mesh), jax.device_put(data)
    arrays, meta = {}, {'device_count': jax.device_count(), 'mesh_size': mesh.size, 'cases': {}}
    for case, (members, shuffle, batch_axis) in CASES.items():
        constrain = parallel.batch_constraint(mesh, batch_axis)
        # Fresh device arrays for every run, from host copies, because fit donates the state.
        state, key = parallel.replicate((starts[members], data_key(members, shuffle)), mesh)
        hlo = epoch_hlo(
            task,
            state,
            mesh_data,
            train.epoch_keys(key, 0),
            members=members,
            shuffle=shuffle,
            constrain_batch=constrain,
        )
        sharded, sharded_history = train.fit(
            task,
            state,
            mesh_data,
            epochs=EPOCHS,
            data_key=key,
            members=members,
            shuffle=shuffle,
            constrain_batch=constrain,
        )
        state, key = jax.device_put((starts[members], data_key(members, shuffle)))
        alone, alone_history = train.fit(
            task, state, single_data, epochs=EPOCHS, data_key=key, members=members, shuffle=shuffle
        )
        for name, final, history in (('sharded', sharded, sharded_history), ('alone', alone, alone_history)):
            arrays |= flat(f'{case}/{name}/params', final.params)
            arrays |= flat(f'{case}/{name}/batch_stats', final.batch_stats)
            for metric in ('train_loss', 'val_loss', 'val_accuracy'):
                arrays[f'{case}/{name}/{metric}'] = np.asarray([row[metric] for row in history])
        per_device = BATCH // mesh.size
        meta['cases'][case] = {
            'state_devices': [len(leaf.sharding.device_set) for leaf in jax.tree.leaves(sharded)],
            'state_replicated': all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(sharded)),
            'alone_state_devices': [len(leaf.sharding.device_set) for leaf in jax.tree.leaves(alone)],
            'all_reduce_in_hlo': 'all-reduce(' in hlo or 'all-reduce-start(' in hlo,
            # Each device's slice of the 64-example batch: the first layer's matmul sees 8 examples a member.
            'per_device_batch_in_hlo': f'f32[{per_device},784]' in hlo
            or f'f32[{len(SETTINGS)},{per_device},784]' in hlo,
        }
    meta['helpers'] = helper_facts(mesh)
    np.savez(os.path.join(output_dir, 'results.npz'), **arrays)
    with open(os.path.join(output_dir, 'meta.json'), 'w') as file:
        json.dump(meta, file)


if __name__ == '__main__':
    main(sys.argv[1])
