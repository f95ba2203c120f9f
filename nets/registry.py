"""Registries: plain dicts from a name to a factory, and the one lookup that refuses an unknown name.

Every room keeps its own registry (`models.MODELS`, `activations.ACTIVATIONS`, `initializers.INITIALIZERS`,
`optimizers.OPTIMIZERS`, `optimizers.SCHEDULES`, `optimizers.TRANSFORMS`, `regularizers.PENALTIES`,
`losses.LOSSES`, `pruning.CRITERIA`, `growth.STRATEGIES`, ...); adding an entry there is all it takes to make a
name usable from a config. `refuse_unknown` is the one check of the field names of a config section.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping


def lookup(registry: Mapping[str, Any], name: Any, what: str) -> Any:
    """`registry[name]`, or ValueError with one line naming `what`, the bad name and the allowed names."""
    if not isinstance(name, str) or name not in registry:
        raise ValueError(f'unknown {what} {name!r}; allowed: {", ".join(registry)}')
    return registry[name]


def refuse_unknown(fields: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """ValueError with one line naming the first of `fields` that is not in `allowed`, as WHERE.FIELD, and the
    allowed fields: the one check of a config section's field names."""
    allowed = list(allowed)
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValueError(f'unknown field {where}.{unknown[0]}; allowed: {", ".join(allowed) or "none"}')


FLOAT32_TINY, FLOAT32_MAX = 1.1754943508222875e-38, 3.4028234663852886e38  # np.finfo(np.float32).tiny and .max


def fits_float32(value: float) -> bool:
    """Whether float32, which every hyper-parameter becomes, holds `value`: not beyond its largest, and not so
    small that it flushes to 0 (below its smallest normal, 1.2e-38)."""
    return value == 0 or FLOAT32_TINY <= abs(value) <= FLOAT32_MAX
