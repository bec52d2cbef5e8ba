"""fastbatch_gui: the desktop app that shows records, batches, steps and epochs while a network trains.

``fastbatch-gui`` runs it (see ``app.py``); ``from fastbatch_gui.window import MainWindow`` embeds it.
"""
