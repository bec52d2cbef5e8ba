"""Counts in words, one rule for the library's messages, the command and the app (gui/fmt.py)."""


def plural(n, word, plural_form=None):
    """``word`` for one, else its plural: ``plural_form`` for an irregular word, else ``es`` after s, x, tch and
    sh (``batch``, ``batches``), ``s`` otherwise."""
    if n == 1:
        return word
    return plural_form or word + ("es" if word.endswith(("s", "x", "tch", "sh")) else "s")


def count(n, word, plural_form=None, sep=","):
    """``1 run``, ``3 runs``, ``1,000 records`` (``sep=""``: ``1000 records``, as lines whose other numbers have
    no separators)."""
    return f"{n:{sep}} {plural(n, word, plural_form)}"
