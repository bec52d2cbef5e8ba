"""The control panel: data, network and training settings, the transport buttons and the exports."""
import math
import os
import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (QAbstractSpinBox, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QGridLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from fastbatch import datasets
from fastbatch.config import ACTIVATIONS, BACKENDS, DEFAULTS, OPTIMIZERS

from .fmt import esc
from .lesson import DATASETS, LR_SCALINGS, NATURAL_FEATURES, TASKS, scaled_rate

# the lesson's settings where they differ from the library's defaults: the seed's plain mini-batch SGD
LESSON_DEFAULTS = {"optimizer": "sgd"}
# name: (objectName, minimum, maximum, default); the CLI checks its flags against the same ranges
SPIN_RANGES = {
    "records": ("recordsSpin", 1, 2_000_000, 1000),
    "features": ("featuresSpin", 1, 1000, 2),
    "seed": ("seedSpin", 0, 2_147_483_647, 0),
    "hidden": ("hiddenSpin", 0, 1024, 32),
    "layers": ("layersSpin", 1, 4, 1),
    "batch_size": ("batchSizeSpin", 1, 2_000_000, 64),
    "epochs": ("epochsSpin", 1, 1_000_000, 5),
    "learning_rate": ("learningRateSpin", 1e-5, 10.0, 0.1),
    "validation_split": ("validationSplitSpin", 0.0, 0.9, 0.0),
    "reference_batch": ("referenceBatchSpin", 1, 2_000_000, 64),
    "threads": ("threadsSpin", 0, 256, 0),   # the kernel's team at most; 0: auto (n_threads=None)
}
# what cannot change in the middle of a run
RUN_FIXED = ("dataset", "records", "features", "seed", "hidden", "layers", "activation", "batch_size", "epochs",
             "optimizer", "backend", "validation_split", "shuffle", "drop_last", "target", "load_file",
             "sorted_by_class", "lr_scaling", "reference_batch", "standardize", "task", "threads")


class _SaysCorrections:
    """A spin box that says what became of text it could not take as typed when an edit ends (focus leaves it,
    Return, or ``commit``): a number beyond a bound becomes the bound, shown in the box; anything else keeps the
    previous value. ``corrected`` carries it ("20 is above its maximum 10: set to 10"). Qt's default put the
    previous value back without a word (and a Step pressed then trained with a rate other than the one typed)."""

    def _init_corrections(self):
        self._correction = None
        self.editingFinished.connect(self.report)

    def _shown(self, value):
        special = self.specialValueText()
        text = self.textFromValue(value)
        return f"{text} ({special})" if special and value == self.minimum() else text

    def fixup(self, text):
        t = text.strip()
        if t and t == self.specialValueText():   # ("auto": the box's own word for its minimum)
            return text
        value = self._number(t)
        if value is not None:
            nearest = min(max(value, self.minimum()), self.maximum())
            if nearest != value:
                bound = "above its maximum" if value > self.maximum() else "below its minimum"
                shown = self._shown(nearest)
                self._correction = f"{t} is {bound} {shown}: set to {shown}"
            return self.textFromValue(nearest)   # (in range: "1,0000" is 10,000, as Qt's own fixup has it)
        self._correction = f"{repr(t) if t else 'empty'} is not a number: kept {self._shown(self.value())}"
        return text

    def commit(self):
        """Take the text being typed (as leaving the box does) and report what became of it."""
        self.interpretText()
        self.report()

    def report(self):
        correction, self._correction = self._correction, None
        if correction:
            self.corrected.emit(correction)


class WholeSpinBox(_SaysCorrections, QSpinBox):
    """An integer spin box that says what became of text it could not take (see ``_SaysCorrections``)."""

    corrected = Signal(str)

    def __init__(self):
        super().__init__()
        self._init_corrections()

    def _number(self, t):
        try:
            return int(t.replace(self.locale().groupSeparator(), ""))
        except ValueError:
            return None


class ExactSpinBox(_SaysCorrections, QDoubleSpinBox):
    """A float spin box that keeps the value it is given: 1.5e-05 stays 1.5e-05, not 2e-05.

    QDoubleSpinBox rounds every value to ``decimals()`` places; with DECIMALS places each double
    from 1e-13 up keeps its 17 significant digits, so it reads back exactly. The text is the
    shortest that reads back as the value (``repr``), and plain or scientific notation is typed.
    """

    DECIMALS = 30
    PARTIAL = re.compile(r"[+-]?\d*\.?\d*(?:[eE][+-]?\d*)?")   # what may still become a number as one types
    corrected = Signal(str)   # (see _SaysCorrections)

    def __init__(self):
        super().__init__()
        self.setDecimals(self.DECIMALS)
        self._init_corrections()

    def _number(self, t):
        try:
            value = float(t)
        except ValueError:
            return None
        return value if value == value else None   # (not NaN)

    def textFromValue(self, value):
        text = repr(float(value))
        return text[:-2] if text.endswith(".0") else text

    def valueFromText(self, text):
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text, pos):
        t = text.strip()
        try:
            value = float(t)
        except ValueError:
            return (QValidator.Intermediate if self.PARTIAL.fullmatch(t) else QValidator.Invalid), text, pos
        if not math.isfinite(value):
            return QValidator.Invalid, text, pos
        ok = self.minimum() <= value <= self.maximum()
        return (QValidator.Acceptable if ok else QValidator.Intermediate), text, pos

    def stepBy(self, steps):
        """The arrows step to a short number (0.15, not 0.15000000000000002): one change, one signal."""
        before = self.value()
        self.blockSignals(True)
        super().stepBy(steps)
        after = float(f"{self.value():.12g}")
        self.setValue(before)
        self.blockSignals(False)
        self.setValue(after)


def _spin(name):
    obj, lo, hi, default = SPIN_RANGES[name]
    if isinstance(default, float):
        w = ExactSpinBox()
        w.setSingleStep(0.05)
        if name == "learning_rate":
            w.setStepType(QAbstractSpinBox.AdaptiveDecimalStepType)
    else:
        w = WholeSpinBox()
        w.setGroupSeparatorShown(hi >= 10_000)
        if name in ("records", "batch_size", "epochs"):
            w.setStepType(QAbstractSpinBox.AdaptiveDecimalStepType)
    w.setObjectName(obj)
    w.setRange(lo, hi)
    w.setValue(default)
    w.setKeyboardTracking(False)  # typing "128" is one change, not three
    w.setAlignment(Qt.AlignRight)
    return w


def _combo(obj, items):
    w = QComboBox()
    w.setObjectName(obj)
    for item in items:
        if isinstance(item, tuple):
            w.addItem(item[1], item[0])
        else:
            w.addItem(item, item)
    return w


def _button(obj, text, tip):
    b = QPushButton(text)
    b.setObjectName(obj)
    b.setToolTip(tip)
    return b


class ControlPanel(QWidget):
    """All the settings; ``changed`` fires on any edit, ``config()`` reads them."""

    changed = Signal()
    fileChosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("controlPanel")
        self.data_path = None
        self.w = {}
        w = self.w
        self.corrections = {}   # box name: what became of text it could not take as typed (the readout says it)
        for name in SPIN_RANGES:
            w[name] = _spin(name)
            if isinstance(w[name], _SaysCorrections):   # (before ``changed``: a new value drops an old correction)
                w[name].valueChanged.connect(lambda _, name=name: self.corrections.pop(name, None))
                w[name].lineEdit().textEdited.connect(lambda _, name=name: self._corrected(name, None))
                w[name].corrected.connect(lambda text, name=name: self._corrected(name, text))
        w["dataset"] = _combo("datasetCombo", DATASETS)
        w["optimizer"] = _combo("optimizerCombo", OPTIMIZERS)
        w["activation"] = _combo("activationCombo", ACTIVATIONS)
        w["backend"] = _combo("backendCombo", BACKENDS)
        for name in ("optimizer", "activation", "backend"):
            w[name].setCurrentIndex(w[name].findData(LESSON_DEFAULTS.get(name, DEFAULTS[name])))
        w["threads"].setSpecialValueText("auto")
        w["threads"].setToolTip("threads of the kernel's team, at most (the step's shapes decide how many it "
                                "uses); auto: the BLAS's thread setting. A run's results depend on it, never on "
                                "the load")
        w["target"] = _combo("targetCombo", [])
        w["shuffle"] = QCheckBox("shuffle records each epoch")
        w["shuffle"].setObjectName("shuffleCheck")
        w["shuffle"].setChecked(True)
        w["drop_last"] = QCheckBox("drop the last short batch")
        w["drop_last"].setObjectName("dropLastCheck")
        w["sorted_by_class"] = QCheckBox("sorted by class")
        w["sorted_by_class"].setObjectName("sortedByClassCheck")
        w["sorted_by_class"].setToolTip("put the records in label order: with shuffle off, each epoch walks "
                                        "through one class, then the next (the shuffle lesson)")
        w["standardize"] = QCheckBox("standardize (features, and a regression's target)")
        w["standardize"].setObjectName("standardizeCheck")
        w["standardize"].setChecked(True)
        w["standardize"].setToolTip("scale each feature to mean 0, std 1 over the training records, and a "
                                    "regression's target too (kept with the params; predictions come back in the "
                                    "data's units, the plotted losses are then those of the standardised target); "
                                    "unscaled data makes the loss jump, stall or diverge")
        w["task"] = _combo("taskCombo", [(k, v[0]) for k, v in TASKS.items()])
        w["task"].setToolTip("auto: whole-number targets with few values are classes, anything else is a "
                             "quantity (the library's rule); or choose")
        w["lr_scaling"] = _combo("lrScalingCombo", list(LR_SCALINGS.items()))
        w["lr_scaling"].setToolTip("scale the learning rate with the batch size against a reference batch: "
                                   "linear (Goyal et al. 2017) or square root; fair batch-size comparisons")
        w["load_file"] = _button("loadFileButton", "Load file…", "Load records from a .csv (header row), .npy or .npz")
        self.file_label = QLabel("no file")
        self.file_label.setObjectName("fileLabel")
        self.file_label.setTextFormat(Qt.PlainText)   # a file named <b>x</b>.csv shows as named
        self.file_label.setStyleSheet("color: #666")
        self.file_label.setWordWrap(True)

        w["records"].setToolTip("records (rows) in the generated dataset")
        w["features"].setToolTip("features (columns); the 2-D datasets pad extra ones with noise")
        w["hidden"].setToolTip("units in each hidden layer (0: no hidden layer, a linear model)")
        w["batch_size"].setToolTip("records per step")
        w["epochs"].setToolTip("passes over all records")
        w["learning_rate"].setToolTip("step size; change it while paused and it applies from the next step")
        w["validation_split"].setToolTip("fraction of the records held out to validate at each epoch end")

        data = QGroupBox("Data")
        f = QFormLayout(data)
        f.addRow("dataset", w["dataset"])
        row = QHBoxLayout()
        row.addWidget(w["load_file"])
        row.addWidget(self.file_label, 1)
        f.addRow(row)
        f.addRow("target column", w["target"])
        f.addRow("task", w["task"])
        f.addRow("records", w["records"])
        f.addRow("features", w["features"])
        f.addRow("seed", w["seed"])
        f.addRow(w["sorted_by_class"])
        f.addRow(w["standardize"])

        net = QGroupBox("Network")
        f = QFormLayout(net)
        f.addRow("hidden units", w["hidden"])
        f.addRow("hidden layers", w["layers"])
        f.addRow("activation", w["activation"])

        train = QGroupBox("Training")
        f = QFormLayout(train)
        f.addRow("batch size", w["batch_size"])
        f.addRow("epochs", w["epochs"])
        f.addRow("learning rate", w["learning_rate"])
        f.addRow("scale the rate", w["lr_scaling"])
        f.addRow("reference batch", w["reference_batch"])
        f.addRow("optimizer", w["optimizer"])
        f.addRow("backend", w["backend"])
        f.addRow("threads", w["threads"])
        f.addRow("validation split", w["validation_split"])
        f.addRow(w["shuffle"])
        f.addRow(w["drop_last"])

        self.start_button = _button("startButton", "▶  Start", "Start a new run with these settings")
        self.pause_button = _button("pauseButton", "Pause", "Pause the run (Resume continues it exactly)")
        self.step_batch_button = _button("stepBatchButton", "Step 1 batch", "Train on one batch: one step")
        self.step_epoch_button = _button("stepEpochButton", "Step 1 epoch", "Train to the end of the current epoch")
        self.stop_button = _button("stopButton", "■  Stop", "End the run (within one step); the curve stays")
        self.reset_button = _button("resetButton", "↺  Reset", "Discard the current run and start over")
        self.start_button.setStyleSheet("QPushButton:enabled { font-weight: bold; }")
        self.transport = transport = QGroupBox("Run")   # the window keeps it in view below the settings
        g = QGridLayout(transport)
        g.addWidget(self.start_button, 0, 0)
        g.addWidget(self.pause_button, 0, 1)
        g.addWidget(self.step_batch_button, 1, 0)
        g.addWidget(self.step_epoch_button, 1, 1)
        g.addWidget(self.stop_button, 2, 0)
        g.addWidget(self.reset_button, 2, 1)

        self.export_csv_button = _button("exportCsvButton", "Export CSV…",
                                         "step,epoch,batch,batch_size,loss,learning_rate,records_seen")
        self.export_png_button = _button("exportPngButton", "Export PNG…", "Save the loss plot as a picture")
        self.clear_runs_button = _button("clearRunsButton", "Clear runs",
                                         "Remove the earlier runs from the plot (the current run stays until Reset)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        for box in (data, net, train):
            layout.addWidget(box)
        layout.addStretch(1)

        for widget in w.values():
            if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
                widget.valueChanged.connect(self.changed)
            elif isinstance(widget, QComboBox):
                widget.currentIndexChanged.connect(self.changed)
            elif isinstance(widget, QCheckBox):
                widget.toggled.connect(self.changed)
        self._last_dataset = w["dataset"].currentData()
        self._own_shape = None   # (dataset, {box: (value, maximum)}) the user had before a file's shape replaced them
        w["dataset"].currentIndexChanged.connect(self._dataset_changed)
        w["lr_scaling"].currentIndexChanged.connect(self._dataset_changed)
        w["load_file"].clicked.connect(self._choose_file)
        self._dataset_changed()

    def _corrected(self, name, text):
        """A box's correction is said in the readout until its value changes or it is typed in again."""
        before = self.corrections.get(name)
        if text:
            self.corrections[name] = f"{name.replace('_', ' ')}: {text}"
        else:
            self.corrections.pop(name, None)
        if self.corrections.get(name) != before:
            self.changed.emit()

    def commit_typing(self):
        """Before a button acts on the settings: text still being typed in a box is taken (or corrected, and
        said), so that nothing runs with a value other than the one shown."""
        for widget in self.w.values():
            if isinstance(widget, _SaysCorrections) and widget.isEnabled():
                widget.commit()

    # ------------------------------------------------------------------ reading and writing the settings

    def config(self):
        """The settings as plain values."""
        w = self.w
        c = {name: w[name].value() for name in SPIN_RANGES}
        for name in ("dataset", "optimizer", "activation", "backend", "lr_scaling", "task"):
            c[name] = w[name].currentData()
        for name in ("shuffle", "drop_last", "sorted_by_class", "standardize"):
            c[name] = w[name].isChecked()
        c["data_path"] = self.data_path
        c["target"] = w["target"].currentData()
        return c

    def learning_rate(self):
        """The rate the run uses: the box's rate, scaled with the batch size when asked."""
        c = self.config()
        return scaled_rate(c["learning_rate"], c["batch_size"], c["reference_batch"], c["lr_scaling"])

    def trainer_params(self):
        """Keyword arguments for ``fastbatch.Trainer``."""
        c = self.config()
        hidden = (c["hidden"],) * c["layers"] if c["hidden"] else ()
        return dict(hidden=hidden, activation=c["activation"], batch_size=c["batch_size"], epochs=c["epochs"],
                    learning_rate=self.learning_rate(), optimizer=c["optimizer"], shuffle=c["shuffle"],
                    drop_last=c["drop_last"], seed=c["seed"], backend=c["backend"],
                    validation_split=c["validation_split"], standardize=c["standardize"],
                    # (the library scales mse targets only: a classification is not asked to, the window
                    # leaves it out for a target the task rule calls classes: Window._trainer_params)
                    standardize_target=c["standardize"] and c["task"] != "classification",
                    loss=TASKS[c["task"]][1],
                    n_threads=(c["threads"] or None) if c["backend"] == "cython" else None)  # (the kernel's team)

    def set_value(self, name, value):
        """Set one setting as a person would (fires ``changed``)."""
        widget = self.w[name]
        if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            # a value the box would clamp or round (as QDoubleSpinBox rounds to decimals()) is refused, not changed
            held = float(f"{value:.{widget.decimals()}f}") if isinstance(widget, QDoubleSpinBox) else value
            if not widget.minimum() <= value <= widget.maximum() or held != value:
                raise ValueError(f"{name} must be between {widget.minimum():g} and {widget.maximum():g} and held "
                                 f"exactly by its box; got {value!r}")
            widget.setValue(value)
        elif isinstance(widget, QComboBox):
            i = widget.findData(value)
            if i < 0:
                raise ValueError(f"{name} must be one of {[widget.itemData(j) for j in range(widget.count())]}, "
                                 f"got {value!r}")
            widget.setCurrentIndex(i)
        else:
            widget.setChecked(bool(value))

    def set_data_file(self, path, target=None):
        """Use the data file ``path`` (target column by name or index; default the last column).

        Raises for an unreadable file or an unknown target before anything changes.
        """
        names = datasets.columns(path)  # raises for a missing or unreadable file
        chosen = None if names is None else len(names) - 1
        if names is not None and target is not None:
            t = str(target)
            chosen = names.index(t) if t in names else None
            if chosen is None and t.lstrip("-").isdigit() and -len(names) <= int(t) < len(names):
                chosen = int(t) % len(names)
            if chosen is None:
                raise ValueError(f"target column {target!r} not found in {path!r}; the columns are {names}")
        self.data_path = os.fspath(path)
        self._fill_target(names, None if names is None else names[chosen])
        self.file_label.setText(os.path.basename(self.data_path))
        self.file_label.setToolTip(f"<span>{esc(self.data_path)}</span>")   # shown as typed
        self.set_value("dataset", "file")
        self._dataset_changed()
        self.changed.emit()

    def _fill_target(self, names, chosen):
        """The target box: the file's columns ``names`` (None: a .npz's y), ``chosen`` selected; a chosen name the
        file no longer has stays listed as such (the plan's error names the columns it has). No signal."""
        items = [("y (from the .npz)", None)] if names is None else [
            (name if name == str(j) else f"{name}  (column {j})", name) for j, name in enumerate(names)]
        if chosen not in [data for _, data in items]:
            items.append((f"{chosen}  (not in the file now)", chosen))
        tc = self.w["target"]
        if [(tc.itemText(i), tc.itemData(i)) for i in range(tc.count())] == items:
            return
        tc.blockSignals(True)
        tc.clear()
        for text, data in items:
            tc.addItem(text, data)
        tc.setCurrentIndex([data for _, data in items].index(chosen))
        tc.blockSignals(False)

    def follow_columns(self):
        """Before the data file is read again (it changed on disk): the target box lists its columns as they are
        now, the chosen target kept by name. An unreadable header changes nothing (reading the records says
        what is wrong)."""
        try:
            names = datasets.columns(self.data_path)
        except Exception:   # whatever a hostile file raises: the read that follows reports it
            return
        self._fill_target(names, self.w["target"].currentData())

    def _choose_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "Load records", "", "Data (*.csv *.npy *.npz);;All files (*)")
        if path:
            self.fileChosen.emit(path)

    def _dataset_changed(self):
        name = self.w["dataset"].currentData()
        is_file = name == "file"
        self.w["target"].setEnabled(is_file and self.data_path is not None)
        for box in ("records", "features"):
            self.w[box].setEnabled(not is_file)
        self.w["reference_batch"].setEnabled(self.w["lr_scaling"].currentData() != "none")
        if not is_file and self._own_shape is not None:   # back to a generated dataset: the user's own values
            before, shape = self._own_shape
            self._own_shape = None
            for box, (value, maximum) in shape.items():
                self.w[box].setMaximum(maximum)
                self.w[box].setValue(value)
            if name == before:   # the features they chose for it, not the dataset's natural count
                self._last_dataset = name
        if name != self._last_dataset and name in NATURAL_FEATURES:
            self.w["features"].setValue(NATURAL_FEATURES[name])   # two moons: its 2 features, no noise columns
        self._last_dataset = name

    def show_data_shape(self, n_records, n_features):
        """The records and features boxes follow the loaded file (they are read-only then, and the user's own
        values come back with a generated dataset)."""
        if self._own_shape is None:
            self._own_shape = (self._last_dataset, {box: (self.w[box].value(), self.w[box].maximum())
                                                    for box in ("records", "features")})
        for box, value in (("records", n_records), ("features", n_features)):
            spin = self.w[box]
            spin.blockSignals(True)
            spin.setMaximum(max(spin.maximum(), value))
            spin.setValue(value)
            spin.blockSignals(False)

    def set_editable(self, running, paused):
        """Lock what cannot change mid-run; the learning rate may change while paused."""
        locked = running or paused
        for name in RUN_FIXED:
            self.w[name].setEnabled(not locked)
        if not locked:
            self._dataset_changed()
            self.w["reference_batch"].setEnabled(self.w["lr_scaling"].currentData() != "none")
        self.w["learning_rate"].setEnabled(not running)
        self.clear_runs_button.setEnabled(not running)
