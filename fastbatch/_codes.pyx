# cython: language_level=3
"""The kernel's codes (``_codes.pxd``), as Python enums: ``Activation``, ``Loss``, ``Optimizer``, ``Status``."""
