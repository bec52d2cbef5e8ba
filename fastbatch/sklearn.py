"""scikit-learn estimators over the :class:`~fastbatch.Trainer`: ``FastBatchClassifier``, ``FastBatchRegressor``.

They take the Trainer's parameters under the Trainer's names and drive a Trainer for
every fit (one training loop: nothing here runs steps itself)::

    from fastbatch.sklearn import FastBatchClassifier
    clf = FastBatchClassifier(hidden=(32,), epochs=20).fit(X, y)
    clf.predict(X), clf.predict_proba(X), clf.score(X, y)

scikit-learn is an optional extra (``pip install fastbatch[sklearn]``); ``import fastbatch``
never imports it.

``partial_fit`` and the Trainer's "one run, same data" model
-------------------------------------------------------------
A Trainer run is bound to its data's number of records (its plan of steps per epoch).
``partial_fit`` keeps one open-ended run (a budget of ``PARTIAL_FIT_EPOCHS`` epochs) and
trains one more epoch of it per call, ``fit(X, y, steps=steps_per_epoch)``, on the X it is
given: so while the calls pass the same number of records (the usual stream of equal
chunks), they continue one run exactly, optimizer state (momentum, Adam moments) and
learning-rate schedule included. When a call passes a different number of records, a new
run starts from the current params: the optimizer state and the schedule start over.
Early stopping (``patience``) and ``validation_split`` apply to ``fit`` only, as in
scikit-learn's ``MLPClassifier``; a ``"cosine"`` schedule in ``partial_fit`` spans the
open-ended budget (so it stays close to the base rate).
"""
try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError("fastbatch.sklearn needs scikit-learn, which is not installed; "
                      "install it with: pip install fastbatch[sklearn]") from exc

import operator

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

from . import config as _config
from ._inference import sigmoid
from ._locks import ForkSafeLock
from .schedule import plan as make_plan
from .trainer import Trainer

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

__all__ = ["FastBatchClassifier", "FastBatchRegressor"]

# the epoch budget of partial_fit's open-ended run (calls past it start a new run)
PARTIAL_FIT_EPOCHS = 1_000_000
# what a partial_fit run sets apart from the estimator's parameters (one open-ended run, an epoch a call)
PARTIAL_OVERRIDES = dict(epochs=PARTIAL_FIT_EPOCHS, validation_split=0.0, patience=None)
# what a trained network is (its layers and activation) and the inputs and targets it learned on (standardised
# or not): set_params of another value between partial_fit calls is a ValueError (fit starts a new network)
NETWORK_PARAMS = ("hidden", "activation", "standardize", "standardize_target")

# the Trainer parameters the estimators take, in the Trainer's names and with its defaults
# (loss is set by the estimator)
ESTIMATOR_DEFAULTS = {p.name: p.default for p in _config.PARAMS if p.name != "loss"}
TRAINER_PARAMS = tuple(ESTIMATOR_DEFAULTS)
_param_values = operator.attrgetter(*TRAINER_PARAMS)  # an estimator's values of them, as given: a tuple


def _given_values(estimator):
    """_param_values, with a list, dict or array copied: one edited in place afterwards (est.hidden.append(8))
    differs."""
    return tuple(v.copy() if isinstance(v, (list, dict, np.ndarray)) else v for v in _param_values(estimator))


def _same_values(values, given):
    """Whether the estimator's ``values`` are the ones ``given`` before (an array's, never: it is checked again)."""
    try:
        return values == given
    except (ValueError, TypeError):  # (an array's truth value)
        return False


# the estimators in a fit or partial_fit call now, by id: another call on one of them is a RuntimeError
_running = set()
_running_lock = ForkSafeLock()
# by id, what a running fit decided and holds back until it commits (_Call.stage): ({name: value}, [names gone])
_staged = {}


class _Call:
    """One fit or partial_fit call on an estimator: one at a time (another thread's call is a RuntimeError, as
    the Trainer's), and a call that raises leaves the estimator's attributes as they were (scikit-learn's
    validate_data resets n_features_in_ and the like before the Trainer runs: a refused fit must not pair a new
    classes_ with the old network). A partial_fit run keeps the steps done before its error (the Trainer's rule):
    the fitted attributes are read from the run, so they show them, and what partial_fit compares the parameters
    with stays what that trainer now has (a rate the failed call already applied stays applied)."""

    __slots__ = ("estimator", "saved")

    KEPT = ("_partial_params",)  # what mirrors the trainer, which keeps what the failed call did to it

    def __init__(self, estimator):
        self.estimator = estimator

    def __enter__(self):
        key = id(self.estimator)
        with _running_lock:
            if key in _running:
                raise RuntimeError(f"fit() or partial_fit() is already running on this {type(self.estimator).__name__} "
                                   "in another thread; use one estimator per thread (e.g. sklearn.base.clone)")
            _running.add(key)
        self.saved = dict(self.estimator.__dict__)
        return self

    # what a fit decides before it trains (scikit-learn's validate_data sets the first two at once): held back by
    # ``stage`` and made the estimator's by ``_commit``, with the network, at the call's end
    STAGED = ("n_features_in_", "feature_names_in_", "classes_", "_n_outputs", "_y_1d")

    def stage(self, **decided):
        """Hold back what this fit decided (validate_data's n_features_in_ / feature_names_in_, and ``decided``:
        classes_, ...) until its ``_commit``: the estimator shows the last fit whole while this one trains (a
        predict, or a pickle, took the new width and labels beside the old network)."""
        d, saved = self.estimator.__dict__, self.saved
        new = {name: d[name] for name in self.STAGED if name in d and (name not in saved or d[name] is not saved[name])}
        new.update(decided)
        gone = [name for name in self.STAGED if name in saved and name not in d]
        for name in self.STAGED:
            if name in saved:
                d[name] = saved[name]
            else:
                d.pop(name, None)
        _staged[id(self.estimator)] = (new, gone)

    def __exit__(self, kind, value, tb):
        _staged.pop(id(self.estimator), None)
        try:
            if kind is not None:
                d = self.estimator.__dict__
                kept = {name: d[name] for name in self.KEPT if name in d}
                for name in [name for name in d if name not in self.saved]:
                    del d[name]
                d.update(self.saved)
                d.update(kept)
        finally:
            with _running_lock:
                _running.discard(id(self.estimator))
        return False


def _run_record(history):
    """What the fitted attributes keep of a finished run (a partial_fit stream's earlier run): its steps' losses,
    its epochs' mean losses, and the records it trained on."""
    return history.loss.astype(np.float64), np.asarray(history.epoch_loss, dtype=np.float64), history.records_trained


def _read_only(a):
    a.flags.writeable = False
    return a

_COMMON_DOC = "\n    " + _config.numpydoc(ESTIMATOR_DEFAULTS).replace("\n", "\n    ") + "\n"

_ATTRS_DOC = """
    trainer_ : fastbatch.Trainer
        The Trainer of the last run (``fit`` makes a new one each time).
    history_ : fastbatch.History
        ``trainer_.history``: the last run's steps, epochs, losses, validation.
    loss_curve_ : ndarray of float64
        The loss of every step (of every ``partial_fit`` call since the last ``fit``).
    epoch_loss_ : ndarray of float64
        The mean loss of every epoch (ditto).
    n_iter_ : int
        Epochs run.
    t_ : int
        Records trained on (as ``MLPClassifier.t_``).
    n_features_in_ : int
        Number of features seen in fit.
"""


class _FastBatchEstimator(BaseEstimator):
    """Shared front: stores the params, drives the Trainer, keeps the fitted attributes."""

    _loss = None  # set by the subclasses

    _extra_params = {}  # estimator-only parameters and their defaults (the classifier's class_weight)

    def __init__(self, **params):
        defaults = {**ESTIMATOR_DEFAULTS, **self._extra_params}
        unknown = set(params) - set(defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown parameter(s) {sorted(unknown)}")
        for name, default in defaults.items():  # stored as given: checked at fit (scikit-learn's rule)
            setattr(self, name, params.get(name, default))

    __init__.__signature__ = _config.signature(ESTIMATOR_DEFAULTS)

    # ------------------------------------------------------------------ driving the Trainer

    def _trainer_params(self, partial):
        params = dict(zip(TRAINER_PARAMS, _param_values(self)))
        if partial:
            params.update(PARTIAL_OVERRIDES)
        return params

    def _new_trainer(self, partial):
        return Trainer(loss=self._loss, **self._trainer_params(partial))  # checks every parameter: ValueError / TypeError

    def _changed_since(self, trainer):
        """The parameters set on the estimator (set_params) since ``trainer`` was made: {name: checked value}
        (a look at the values as given first: a partial_fit call pays no check when nothing changed)."""
        if _same_values(_param_values(self), getattr(self, "_partial_params", None)):
            return {}
        want = _config.check_config({**self._trainer_params(partial=True), "loss": self._loss})
        have = trainer.config
        return {name: want[name] for name in TRAINER_PARAMS if want[name] != have[name]}

    def _fit(self, X, y_train, sample_weight=None, outputs=None):
        """A new run over (X, y_train), ``epochs`` epochs (``outputs``: the network's, when the targets alone do
        not tell)."""
        trainer = self._new_trainer(partial=False)
        trainer.fit(X, y_train, n_outputs=outputs, sample_weight=sample_weight)
        self._partial_run = False
        self._partial_params = None  # (the parameters partial_fit's checks compare with: fit's trainer's now)
        self._commit(trainer, ())
        return self

    def _commit(self, trainer, earlier):
        """Make ``trainer`` the estimator's network, with ``earlier`` (the runs before its, since the last fit:
        partial_fit's runs of other sizes) and what the call decided beside it (the classes, the targets' shape),
        in one assignment (``_stream``), which a reader in another thread sees whole: predict never pairs a new
        fit's labels with the old network, nor n_iter_ a run twice."""
        d = self.__dict__
        new, gone = _staged.pop(id(self), ({}, ()))
        d.update(new)
        for name in gone:
            d.pop(name, None)
        self._stream = (earlier, trainer, d.get("classes_"), d.get("_y_1d"))
        self.trainer_ = trainer

    def _fitted(self):
        """(earlier runs, trainer, classes, targets 1-D) as the last fit or partial_fit call made them."""
        stream = self.__dict__.get("_stream")
        if stream is None:  # (NotFittedError is an AttributeError too: hasattr(est, "n_iter_") is False)
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit or partial_fit first")
        return stream

    def _partial_fit(self, X, y_train, sample_weight=None):
        """One more epoch of the open-ended partial_fit run (a new run if the record count changed)."""
        trainer = getattr(self, "trainer_", None)
        n = X.shape[0]
        same_run = (trainer is not None and self._partial_run and trainer.plan is not None
                    and trainer.plan.n_records == n and not trainer.finished)
        if trainer is not None:  # parameters set since (set_params)
            changed = self._changed_since(trainer)
            fixed = [name for name in NETWORK_PARAMS if name in changed]
            if fixed:  # what the network is, or the inputs it was trained on: partial_fit cannot go on with it
                raise ValueError(", ".join(f"{name}={changed[name]!r}" for name in fixed) + " differs from the "
                                 f"network's {', '.join(f'{n}={trainer.config[n]!r}' for n in fixed)}, which "
                                 "partial_fit goes on training: fit() starts a new network")
            if set(changed) - set(_config.LIVE):
                same_run = False  # a new run from the network (a batch size, an optimizer...)
            elif same_run and changed:  # the rate applies from the next step (kept if this call fails, as the record)
                for name, value in changed.items():
                    setattr(trainer, name, value)
                self._partial_params = _given_values(self)
        if not same_run:  # a new run, from the current network (and its standardisation) if there is one
            previous, trainer = trainer, self._new_trainer(partial=True)
            if previous is not None and previous.run_state is not None:
                trainer._continue_network(previous)
        plan = trainer.plan if same_run else make_plan(n, trainer.batch_size, 1, trainer.drop_last)
        # (a failed call: the trainer of the same run keeps the steps before the error, e.g. a DivergenceError, and
        # the fitted attributes, read from it, show them; a new run that failed is dropped, _Call puts back the rest)
        trainer.fit(X, y_train, steps=plan.steps_per_epoch, n_outputs=self._network_outputs(),
                    sample_weight=sample_weight)
        if not same_run:
            stream = self.__dict__.get("_stream")
            earlier = () if stream is None else stream[0]
            if stream is not None and stream[1].run_state is not None:  # its run stays in the curves
                earlier = (*earlier, _run_record(stream[1].history))
            self._partial_run = True
            self._commit(trainer, earlier)
        if not same_run or not _same_values(_param_values(self), self._partial_params):  # (those the run goes on with)
            self._partial_params = _given_values(self)
        return self

    def _network_outputs(self):
        """The network's outputs when the targets alone do not tell (None: let the Trainer decide)."""
        return None

    def _plain(self, X, y):
        """Whether a later partial_fit's (X, y) are plain numpy arrays that scikit-learn's
        ``validate_data`` would pass through unconverted: then it is skipped (about 200 us a call).
        Their values are checked by the Trainer, as every fit's are (a ValueError names a bad one)."""
        return (type(X) is np.ndarray and X.ndim == 2 and X.dtype in _FLOATS and X.flags.c_contiguous
                and X.shape[0] >= 1 and X.shape[1] == getattr(self, "n_features_in_", -1)
                and not hasattr(self, "feature_names_in_")
                and type(y) is np.ndarray and y.ndim == 1 and y.shape[0] == X.shape[0])

    # the fitted attributes are read from the runs (trainer_'s as it is now, and a partial_fit stream's earlier
    # runs): they always agree with the network, also after a call that ended mid-epoch (a divergence's rewind,
    # stop(), an interrupt), and a reader in another thread sees a whole moment of them

    def _runs(self):
        """[(step losses, epoch losses, records), ...] of the runs since the last fit, trainer_'s last (as now)."""
        earlier, trainer = self._fitted()[:2]
        return [*earlier, _run_record(trainer.history)]

    def _curves(self):
        """(loss_curve_, epoch_loss_), made again only when the run has moved since they were last asked (a stream
        that reads them after each call pays for its new steps only when it reads them, not for the whole run)."""
        earlier, trainer = self._fitted()[:2]
        st = trainer.run_state
        key = (earlier, trainer, st.loss_buf if st is not None else None)
        counts = (st.step, len(st.epoch_loss)) if st is not None else (0, 0)
        kept = self.__dict__.get("_curves_kept")
        if kept is not None and kept[1] == counts and all(a is b for a, b in zip(kept[0], key)):
            return kept[2]
        runs = self._runs()
        curves = (_read_only(np.concatenate([run[0] for run in runs])),
                  _read_only(np.concatenate([run[1] for run in runs])))
        self._curves_kept = (key, counts, curves)
        return curves

    @property
    def history_(self):
        """``trainer_.history``: the last run's steps, epochs, losses and validation, as they are now."""
        return self._fitted()[1].history

    @property
    def loss_curve_(self):
        """Every step's loss, over all fit / partial_fit calls of this run (float64, read-only)."""
        return self._curves()[0]

    @property
    def epoch_loss_(self):
        """Every epoch's mean loss (float64, read-only); an epoch in progress (a call that ended inside it): its
        mean so far."""
        return self._curves()[1]

    @property
    def n_iter_(self):
        """Epochs run (an epoch in progress counts once)."""
        earlier, trainer = self._fitted()[:2]
        st = trainer.run_state
        begun = -(-st.step // st.steps_per_epoch) if st is not None and st.steps_per_epoch else 0
        return sum(len(run[1]) for run in earlier) + begun

    @property
    def t_(self):
        """Records trained on (as ``MLPClassifier.t_``)."""
        earlier, trainer = self._fitted()[:2]
        return sum(run[2] for run in earlier) + trainer.history.records_trained

    def _outputs(self, X, trainer=None):
        check_is_fitted(self, "trainer_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32), order="C")
        return (trainer or self._fitted()[1]).decision_function(X).astype(np.float64)

    def __getstate__(self):
        state = dict(super().__getstate__())  # (a copy: object.__getstate__ gives the live __dict__)
        state.pop("_curves_kept", None)  # (a cache of what the runs give again: not pickled)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class FastBatchClassifier(ClassifierMixin, _FastBatchEstimator):
    __doc__ = ("""A dense network classifier trained in mini-batches by a :class:`fastbatch.Trainer`.

    Labels can be anything :func:`numpy.unique` sorts (strings, -1/1, ...): they are
    encoded as 0..k-1 (``classes_`` maps back) and trained with ``cross_entropy`` over k
    logits (two logits for two classes).
""" + _COMMON_DOC + """    class_weight : dict, "balanced" or None, default=None
        Weights per class, as scikit-learn defines them (multiplied into ``sample_weight``); ``partial_fit``
        takes a dict only.

    Attributes
    ----------
    classes_ : ndarray
        The class labels, sorted.""" + _ATTRS_DOC + """
    Examples
    --------
    >>> import numpy as np
    >>> from fastbatch.sklearn import FastBatchClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)); y = np.where(X[:, 0] > 0, "yes", "no")
    >>> clf = FastBatchClassifier(epochs=10).fit(X, y)
    >>> clf.classes_.tolist()
    ['no', 'yes']
    """)

    _loss = "cross_entropy"
    _extra_params = {"class_weight": None}

    def __init__(self, **params):
        super().__init__(**params)

    __init__.__signature__ = _config.signature({**ESTIMATOR_DEFAULTS, "class_weight": None})

    def fit(self, X, y, sample_weight=None):
        """Train a new network on (X, y) for ``epochs`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_records, n_features)
        y : array-like of shape (n_records,)
            Class labels of any sortable type.
        sample_weight : array-like of shape (n_records,), optional
            Per-record weights (multiplied by ``class_weight``'s).

        Returns
        -------
        self : FastBatchClassifier
        """
        with _Call(self) as call:
            X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), order="C")
            y = column_or_1d(y, warn=True)
            check_classification_targets(y)
            classes, y_train = np.unique(y, return_inverse=True)
            call.stage(classes_=classes)
            weights = _class_weights(self.class_weight, classes, y_train, sample_weight, X.shape[0])
            return self._fit(X, y_train.astype(np.int64).reshape(-1), weights, outputs=max(len(classes), 2))

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train one more epoch on (X, y), continuing from the current network.

        Parameters
        ----------
        X : array-like of shape (n_records, n_features)
        y : array-like of shape (n_records,)
        classes : array-like, optional
            All the labels that will ever appear; required on the first call (as
            ``SGDClassifier.partial_fit``), and must not change afterwards.
        sample_weight : array-like of shape (n_records,), optional
            Per-record weights (multiplied by ``class_weight``'s, which must be a dict here: "balanced"
            needs every label's frequency, which one chunk does not show; as ``SGDClassifier.partial_fit``).

        Returns
        -------
        self : FastBatchClassifier
        """
        with _Call(self):
            if isinstance(self.class_weight, str) and self.class_weight == "balanced":
                raise ValueError("class_weight='balanced' is not supported by partial_fit (a chunk does not show the "
                                 "labels' frequencies): pass class_weight=dict(zip(classes, compute_class_weight("
                                 "'balanced', classes=classes, y=y_sample))) from a large enough sample of the targets")
            first = not hasattr(self, "classes_")
            if first or not self._plain(X, y):  # (plain arrays: labels outside classes_ are refused below)
                X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), order="C", reset=first)
                y = column_or_1d(y, warn=True)
                check_classification_targets(y)
            if first:
                if classes is None:
                    raise ValueError("classes must be passed on the first call to partial_fit "
                                     "(all the labels that will ever appear)")
                classes = np.unique(np.asarray(classes))
                if classes.size == 0:
                    raise ValueError("classes must hold at least one label, got an empty array")
                self.classes_ = classes
            elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(f"classes={np.asarray(classes)!r} differs from the classes of the first "
                                 f"partial_fit call, {self.classes_!r}")
            y_train = np.searchsorted(self.classes_, y)
            unseen = (y_train >= len(self.classes_)) | (self.classes_[np.minimum(y_train, len(self.classes_) - 1)] != y)
            if unseen.any():
                raise ValueError(f"y holds labels not in classes: {np.unique(y[unseen])!r}; "
                                 f"classes are {self.classes_!r}")
            weights = _class_weights(self.class_weight, self.classes_, y_train, sample_weight, X.shape[0])
            return self._partial_fit(X, y_train.astype(np.int64), weights)

    def _network_outputs(self):
        # every class gets an output, also when this chunk's labels do not show the largest
        return max(len(self.classes_), 2)

    def decision_function(self, X):
        """Scores: the logits, shape (n, k); for two classes the log-odds of ``classes_[1]``, shape (n,)."""
        z = self._outputs(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X):
        """Class probabilities, shape (n, n_classes), columns in the order of ``classes_``."""
        _, trainer, classes, _ = self._fitted()  # (the network and the classes of one call, together)
        z = self._outputs(X, trainer)
        if len(classes) == 1:  # one class seen: it is every record's, with probability 1 (a row sums to 1)
            return np.ones((z.shape[0], 1))
        if z.shape[1] == 2:  # from the log-odds, so proba ranks exactly as decision_function
            p = sigmoid(z[:, 1] - z[:, 0])
            proba = np.column_stack([1.0 - p, p])
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            proba = e / e.sum(axis=1, keepdims=True)
        return proba

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most likely label of each record, from ``classes_``."""
        _, trainer, classes, _ = self._fitted()  # (the network and the classes of one call, together)
        z = self._outputs(X, trainer)[:, :len(classes)]
        return classes[z.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


class FastBatchRegressor(RegressorMixin, _FastBatchEstimator):
    __doc__ = ("""A dense network regressor (mse loss) trained in mini-batches by a :class:`fastbatch.Trainer`.

    ``y`` may be 1-D, or 2-D (n_records, k) for k outputs.
""" + _COMMON_DOC + """
    Attributes
    ----------""" + _ATTRS_DOC + """
    Examples
    --------
    >>> import numpy as np
    >>> from fastbatch.sklearn import FastBatchRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = X @ [1.0, -2.0, 0.5]
    >>> reg = FastBatchRegressor(epochs=30).fit(X, y)
    >>> reg.score(X, y) > 0.9
    True
    """)

    _loss = "mse"

    def _check(self, X, y, reset):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), order="C", reset=reset,
                             multi_output=True, y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if reset:
            self._n_outputs = 1 if y.ndim == 1 else y.shape[1]
        elif (1 if y.ndim == 1 else y.shape[1]) != self._n_outputs:
            raise ValueError(f"y has {1 if y.ndim == 1 else y.shape[1]} target columns, but this "
                             f"regressor was fitted with {self._n_outputs}")
        self._y_1d = y.ndim == 1
        return X, np.asarray(y, dtype=np.float64)

    def fit(self, X, y, sample_weight=None):
        """Train a new network on (X, y) for ``epochs`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_records, n_features)
        y : array-like of shape (n_records,) or (n_records, n_outputs)
        sample_weight : array-like of shape (n_records,), optional
            Per-record weights.

        Returns
        -------
        self : FastBatchRegressor
        """
        with _Call(self) as call:
            X, y = self._check(X, y, reset=True)
            call.stage()
            return self._fit(X, y, sample_weight)

    def partial_fit(self, X, y, sample_weight=None):
        """Train one more epoch on (X, y), continuing from the current network.

        ``sample_weight`` (n_records,): per-record weights, optional.

        Returns
        -------
        self : FastBatchRegressor
        """
        with _Call(self):
            first = not hasattr(self, "trainer_")
            if not first and self._plain(X, y) and y.dtype.kind == "f" and self._n_outputs == 1:
                return self._partial_fit(X, np.asarray(y, dtype=np.float64), sample_weight)
            X, y = self._check(X, y, reset=first)
            return self._partial_fit(X, y, sample_weight)

    def predict(self, X):
        """The predicted targets, shape (n,) (or (n, n_outputs) when fitted on 2-D y)."""
        _, trainer, _, y_1d = self._fitted()  # (the network and its targets' shape, of one call)
        z = self._outputs(X, trainer)
        return z[:, 0] if y_1d else z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _class_weights(class_weight, classes, y_encoded, sample_weight, n):
    """Per-record weights from ``class_weight`` (None, "balanced" or {label: weight}) times ``sample_weight``."""
    from sklearn.utils.class_weight import compute_class_weight
    if class_weight is None:
        per_class = None
    elif isinstance(class_weight, str) and class_weight == "balanced":
        per_class = compute_class_weight("balanced", classes=classes, y=classes[y_encoded])
    elif isinstance(class_weight, dict):
        unknown = set(class_weight) - set(classes.tolist())
        if unknown:
            raise ValueError(f"class_weight names labels that are not in y: {sorted(map(str, unknown))}")
        try:
            per_class = np.array([float(class_weight.get(c, 1.0)) for c in classes.tolist()])
        except (TypeError, ValueError):
            raise TypeError(f"class_weight's weights must be numbers, got {class_weight!r}") from None
        if not (np.isfinite(per_class).all() and (per_class >= 0).all()):
            raise ValueError(f"class_weight's weights must be finite and >= 0, got {class_weight!r}")
    else:
        raise ValueError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, got {class_weight!r}")
    w = None if per_class is None else per_class[y_encoded]
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64)
        if sw.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},), got {sw.shape}")
        w = sw if w is None else w * sw
    return w
