"""The numbers and words a learner reads: one number format (thousands separators), plural-aware counts."""
import html

from fastbatch._text import plural as plural_of


def num(value):
    """``1,000`` for whole numbers, ``0.0125`` (4 significant digits) otherwise."""
    if isinstance(value, bool):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) >= 1e4 else f"{value:.4g}"


def count(n, word, plural=None):
    """``1 epoch``, ``2 epochs``, ``1,000 records`` (``plural`` for irregular words; the library's rule)."""
    return f"{num(n)} {plural_of(n, word, plural)}"


def clock(seconds):
    """``0:03.2`` or ``1:02:03.4``."""
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def esc(value):
    """``value`` as text that rich text (a QLabel's HTML, a tooltip) shows literally: ``<b>x</b>``, ``&`` as typed."""
    return html.escape(str(value), quote=False)


def load_error(exc, source):
    """``exc`` when a loader raised one of the errors it promises, else a ValueError naming ``source`` and it."""
    if isinstance(exc, (ValueError, TypeError, OSError)):
        return exc
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ValueError(f"could not load {source} ({what})")
