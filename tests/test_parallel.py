"""Data parallelism: a run replicated over an 8-device data mesh equals the single-device run, and is really sharded;
multi-host initialisation happens only when flags or the cluster ask for it."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh

from nets import parallel

DEVICES = 8
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'parallel_worker.py')
# Both runs compute the same sums in a different order (8 partial sums, then an all-reduce). The largest gaps seen
# are 1.5e-7 on weights and 5e-7 on losses near 2, so these leave about two orders of magnitude of room; batch-norm
# statistics over each device's 8 examples alone, instead of all 64, would miss by far more.
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    """Runs tests/parallel_worker.py with 8 forced CPU devices (set before jax is imported, so in a subprocess)."""
    output = tmp_path_factory.mktemp('parallel')
    env = dict(
        os.environ,
        JAX_PLATFORMS='cpu',
        XLA_FLAGS=f'{os.environ.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count={DEVICES}',
    )
    done = subprocess.run(
        [sys.executable, WORKER, str(output)], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    with open(output / 'meta.json') as file:
        meta = json.load(file)
    with np.load(output / 'results.npz') as arrays:
        return meta, dict(arrays)


def assert_sharded_equals_alone(results, case):
    meta, arrays = results
    sharded = sorted(key for key in arrays if key.startswith(f'{case}/sharded/'))
    assert any('params' in key for key in sharded) and any('batch_stats' in key for key in sharded)
    for key in sharded:
        np.testing.assert_allclose(
            arrays[key], arrays[key.replace('/sharded/', '/alone/')], rtol=RTOL, atol=ATOL, err_msg=key
        )
    # Training moved the weights: equal results are not just two copies of the initial state.
    assert np.all(arrays[f'{case}/alone/train_loss'][-1] < arrays[f'{case}/alone/train_loss'][0])
    assert meta['device_count'] == DEVICES and meta['mesh_size'] == DEVICES
    facts = meta['cases'][case]
    assert set(facts['state_devices']) == {DEVICES} and facts['state_replicated']
    assert set(facts['alone_state_devices']) == {1}
    # Proof that the batch was split: each device's first matmul sees 64 / 8 examples, and the partial gradients
    # and batch-norm statistics are summed across devices.
    assert facts['per_device_batch_in_hlo'] and facts['all_reduce_in_hlo']


@pytest.mark.slow
def test_data_parallel_fit_with_batch_norm_and_dropout_equals_one_device(results):
    assert_sharded_equals_alone(results, 'single')


@pytest.mark.slow
@pytest.mark.parametrize('shuffle', ['shared', 'per_member'])
def test_data_parallel_sweep_equals_the_one_device_sweep(results, shuffle):
    assert_sharded_equals_alone(results, f'sweep_{shuffle}')
    _, arrays = results
    # The two members really differ (other learning rate, dropout and seed).
    assert not np.allclose(
        arrays[f'sweep_{shuffle}/alone/train_loss'][:, 0], arrays[f'sweep_{shuffle}/alone/train_loss'][:, 1]
    )


def test_check_batch_size_rejects_a_batch_that_does_not_split_evenly():
    mesh = AbstractMesh((DEVICES,), (parallel.DATA_AXIS,))
    parallel.check_batch_size(64, mesh)
    with pytest.raises(ValueError, match='batch_size 100 is not divisible by the 8 devices') as error:
        parallel.check_batch_size(100, mesh)
    assert '\n' not in str(error.value)


@pytest.mark.slow
def test_replicate_and_batch_constraint_on_eight_devices(results):
    meta, _ = results
    assert meta['helpers'] == {'replicated': True, 'batch_spec_is_none_data': True, 'batch_split': True}


@pytest.fixture
def initialize_calls(monkeypatch):
    """A recorder in place of jax.distributed.initialize, in an environment with no cluster variables."""
    for name in list(os.environ):
        if name.startswith(('SLURM_', 'TPU_', 'MEGASCALE_')):
            monkeypatch.delenv(name)
    calls = []
    monkeypatch.setattr(jax.distributed, 'initialize', lambda **kwargs: calls.append(kwargs))
    return calls


def test_initialize_distributed_does_nothing_on_a_plain_machine(initialize_calls, monkeypatch):
    assert parallel.initialize_distributed() is False
    monkeypatch.setenv('SLURM_JOB_ID', '17')
    monkeypatch.setenv('SLURM_NTASKS', '1')  # an allocation of one task is still one machine
    monkeypatch.setenv('TPU_WORKER_HOSTNAMES', 'localhost')  # a single-host TPU VM
    assert parallel.initialize_distributed() is False
    assert initialize_calls == []


@pytest.mark.parametrize(
    'variables',
    [
        {'SLURM_JOB_ID': '17', 'SLURM_NTASKS': '4'},
        {'TPU_WORKER_HOSTNAMES': 'host-0,host-1,host-2,host-3'},
        {'MEGASCALE_COORDINATOR_ADDRESS': 'host-0:8080', 'MEGASCALE_NUM_SLICES': '2'},
    ],
    ids=['slurm', 'tpu_pod_slice', 'tpu_multislice'],
)
def test_initialize_distributed_joins_a_cluster_it_detects(initialize_calls, monkeypatch, variables):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert parallel.initialize_distributed() is True
    assert initialize_calls == [{}]  # no arguments: JAX's own cluster detection fills them in


def test_initialize_distributed_passes_explicit_flags_on(initialize_calls):
    assert parallel.initialize_distributed('10.0.0.1:1234', 2, 1) is True
    assert initialize_calls == [{'coordinator_address': '10.0.0.1:1234', 'num_processes': 2, 'process_id': 1}]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(('localhost', 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_hosts_give_the_numbers_of_one(data_dir, tmp_path):
    """launch.py as two processes (two CPU devices each) joined by jax.distributed equals one process on one device."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    flags = [
        '--config=experiments/baseline.py:quick',
        '--config.seeds=(0,1)',
        f'--data_dir={data_dir}',
        '--compilation_cache_dir=',
    ]
    environment = dict(os.environ, JAX_PLATFORMS='cpu')
    port = _free_port()
    hosts = [
        subprocess.Popen(
            [
                sys.executable,
                'launch.py',
                *flags,
                f'--workdir={tmp_path / "two_hosts"}',
                f'--coordinator_address=localhost:{port}',
                '--num_processes=2',
                f'--process_id={index}',
            ],
            cwd=repo,
            env=dict(environment, XLA_FLAGS='--xla_force_host_platform_device_count=2'),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(2)
    ]
    outputs = [host.communicate(timeout=300)[0] for host in hosts]
    assert all(host.returncode == 0 for host in hosts), outputs[0][-2000:] + outputs[1][-2000:]
    single = subprocess.run(
        [sys.executable, 'launch.py', *flags, f'--workdir={tmp_path / "one"}'],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    two = json.loads((tmp_path / 'two_hosts' / 'results.json').read_text())
    one = json.loads((tmp_path / 'one' / 'results.json').read_text())
    assert two['versions']['device_count'] == '4' and one['versions']['device_count'] == '1'
    for variant in ('baseline', 'refit'):
        for seed in ('seed=0', 'seed=1'):
            for a, b in zip(two['runs'][variant][seed]['history'], one['runs'][variant][seed]['history']):
                np.testing.assert_allclose(a['train_loss'], b['train_loss'], rtol=1e-4)
            np.testing.assert_allclose(
                two['runs'][variant][seed]['test']['loss'], one['runs'][variant][seed]['test']['loss'], rtol=1e-4
            )
