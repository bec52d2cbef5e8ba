"""fastbatch_gui: the desktop app that shows records, batches, steps and epochs while a network trains.

``fastbatch-gui`` runs it (``app.py``: the command line); ``from fastbatch_gui.window import MainWindow``
embeds it. One job per file:

- ``run_controller.py``: the run's state machine (start, pause, step, stop, reset), no widgets;
- ``worker.py``: the QThread worker that calls ``Trainer.fit`` in time-sized chunks;
- ``window.py``: lays out and draws; ``controls.py``: the settings and buttons;
- ``loss_plot.py``, ``surface_plot.py``, ``batch_map.py``, ``batch_lab.py``: the views;
- ``data_memory.py``: a generated dataset's size in memory, known before it is made (too big for the machine: refused);
- ``decimate.py``: the loss plot's min/max pyramid (a bounded, per-pixel-column view of any run length);
- ``lesson.py`` (datasets, rate scaling) and ``fmt.py`` (numbers and words a learner reads).
"""
