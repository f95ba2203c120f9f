"""Mesh and sharding helpers for data parallelism, and multi-host initialisation."""
from __future__ import annotations

import jax


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Joins a multi-host run when asked (flags) or when the cluster says so (TPU pod, SLURM); else nothing."""
    if coordinator_address is not None or num_processes is not None or process_id is not None:
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id)
