"""Registries: plain dicts from a name to a factory, and the one lookup that refuses an unknown name.

Every room keeps its own registry (`models.MODELS`, `activations.ACTIVATIONS`, `initializers.INITIALIZERS`,
`optimizers.OPTIMIZERS`, `optimizers.SCHEDULES`, `optimizers.TRANSFORMS`, `regularizers.PENALTIES`,
`losses.LOSSES`); adding an entry there is all it takes to make a name usable from a config.
"""

from __future__ import annotations

from typing import Any, Mapping


def lookup(registry: Mapping[str, Any], name: Any, what: str) -> Any:
    """`registry[name]`, or ValueError with one line naming `what`, the bad name and the allowed names."""
    if not isinstance(name, str) or name not in registry:
        raise ValueError(f'unknown {what} {name!r}; allowed: {", ".join(registry)}')
    return registry[name]
