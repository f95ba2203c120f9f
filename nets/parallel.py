"""Mesh and sharding helpers for data parallelism, and multi-host initialisation.

Data parallelism here is plain SPMD: the state and the in-memory dataset are replicated on every device, and each
gathered batch is constrained to be split along its batch axis over the 'data' mesh axis. XLA's partitioner then
inserts the all-reduces that make gradients and batch-norm statistics means over the global batch, so a run on N
devices computes what a run on one device computes, up to float rounding.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def _multi_host_cluster(environ: Mapping[str, str]) -> bool:
    """Whether the environment describes a job of several processes that JAX's cluster detection can join."""
    # JAX's SlurmCluster reads SLURM_JOB_ID and SLURM_NTASKS (plus the step's node list and task ids); one task
    # is a single machine, where initialising would only add a coordinator for nothing.
    slurm = 'SLURM_JOB_ID' in environ and int(environ.get('SLURM_NTASKS') or 1) > 1
    # JAX's GKE TPU cluster lists a slice's hosts in TPU_PROCESS_ADDRESSES or TPU_WORKER_HOSTNAMES; MEGASCALE_*
    # describes a multi-slice job. A single-host TPU VM lists one host (or none) and needs no initialisation.
    hosts = environ.get('TPU_PROCESS_ADDRESSES') or environ.get('TPU_WORKER_HOSTNAMES') or ''
    tpu_pod = len([host for host in hosts.split(',') if host.strip()]) > 1
    slices = int(environ.get('MEGASCALE_NUM_SLICES') or 1)
    multislice = bool(environ.get('MEGASCALE_COORDINATOR_ADDRESS')) or slices > 1
    return slurm or tpu_pod or multislice


def initialize_distributed(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Joins a multi-host run when flags or the cluster (TPU pod slice, SLURM) ask for it; returns whether it did."""
    if coordinator_address is not None or num_processes is not None or process_id is not None:
        jax.distributed.initialize(
            coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
        )
        return True
    if _multi_host_cluster(os.environ):
        jax.distributed.initialize()  # JAX's own cluster detection fills in the address, count and id
        return True
    return False


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named 'data' over all (global) devices."""
    return Mesh(np.asarray(jax.devices() if devices is None else list(devices)), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a whole copy of an array on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Puts every leaf on every device of the mesh (params, optimizer state, datasets in memory)."""
    sharding = replicated(mesh)

    def put(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return jax.device_put(leaf, sharding)  # already global: a reshard between devices, no host copy
        # Each process fills its own devices from its local copy, which must be the same on every process. Unlike
        # device_put, this also accepts arrays committed to one device (jit outputs) in a multi-process run.
        local = leaf if isinstance(leaf, (jax.Array, np.ndarray)) else np.asarray(leaf)
        return jax.make_array_from_callback(local.shape, sharding, lambda index: local[index])

    return jax.tree.map(put, tree)


def batch_constraint(mesh: Mesh, batch_axis: int = 0) -> Callable[[jax.Array], jax.Array]:
    """A function for fit(constrain_batch=...) that shards a gathered batch along `batch_axis` over 'data'."""
    sharding = NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), DATA_AXIS))
    return lambda batch: jax.lax.with_sharding_constraint(batch, sharding)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises ValueError unless the batch splits evenly over the mesh's 'data' axis."""
    devices = mesh.shape[DATA_AXIS]
    if batch_size % devices:
        raise ValueError(
            f'batch_size {batch_size} is not divisible by the {devices} devices of the data mesh; '
            f'use a multiple of {devices}'
        )
