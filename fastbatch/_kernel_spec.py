"""What a run asks of a backend's ``train_steps``: the network, the batching and the optimizer, as codes.

Made once per run by the driver from the checked config; both backends read it.
Codes are those of ``fastbatch._codes`` (``_config.*_CODES``).
"""
import dataclasses
import functools
import itertools
import operator

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class KernelSpec:
    """The fixed part of every ``train_steps`` call of one run."""

    sizes: np.ndarray          # int64 [n_in, h1, ..., n_out]
    batch_size: int
    steps_per_epoch: int
    shuffle: bool
    seed: int
    activation: int            # _codes.Activation
    loss: int                  # _codes.Loss
    optimizer: int             # _codes.Optimizer
    momentum: float = 0.0      # SGD, RMSprop
    nesterov: bool = False     # SGD
    beta1: float = 0.9         # Adam, AdamW
    beta2: float = 0.999
    eps: float = 1e-8          # Adam, AdamW, RMSprop
    weight_decay: float = 0.0
    alpha: float = 0.99        # RMSprop's smoothing
    centered: bool = False     # RMSprop
    n_threads: int = 1         # the team size asked for; small steps may use fewer
    split_columns: object = None  # None: the kernel decides; True / False forces a split (tests)
    key: int = dataclasses.field(default=-1, init=False, repr=False)  # equal specs (every field), equal keys

    def __post_init__(self):
        sizes = np.array(self.sizes, dtype=np.int64)  # a copy the caller cannot change
        if sizes.ndim != 1 or sizes.shape[0] < 2 or (sizes < 1).any():
            raise ValueError(f"sizes must list at least 2 layer widths >= 1, got {self.sizes!r}")
        sizes.flags.writeable = False
        object.__setattr__(self, "sizes", sizes)
        for name in ("batch_size", "steps_per_epoch", "n_threads"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.split_columns not in (None, True, False):
            raise ValueError(f"split_columns must be None, True or False, got {self.split_columns!r}")
        key = (tuple(sizes.tolist()),) + _key_fields(self)
        object.__setattr__(self, "key", _KEYS.setdefault(key, next(_NEXT_KEY)))  # (atomic: threads may race)

    @functools.cached_property
    def n_params(self):
        """Length of theta: every layer's weights and biases."""
        s = self.sizes
        return int((s[:-1] * s[1:] + s[1:]).sum())

    def __repr__(self):
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                           if f.name not in ("sizes", "key"))
        return f"KernelSpec(sizes={self.sizes.tolist()}, {fields})"


_KEYS = {}  # every distinct spec made in this process -> its key (a small int: cheap to hash per call)
_NEXT_KEY = itertools.count()
_key_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(KernelSpec) if f.name not in ("sizes", "key")))
