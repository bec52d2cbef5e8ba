"""Builds the Cython extension; the metadata lives in pyproject.toml.

The kernel is written once for both dtypes: ``_kernel.pyx.tp`` and ``_kernel_dense.h.tp``
are Tempita templates (as scikit-learn's ``.pyx.tp``), rendered here for each row of TYPES
into ``_kernel.pyx`` and ``_kernel_dense.h`` (generated: edit the templates).

FASTBATCH_DEBUG=1 builds with bounds and wraparound checks on (slow; for finding bugs).
FASTBATCH_SANITIZE=1 adds AddressSanitizer to the C code; run the tests with
LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0.
"""
import os

import numpy as np
from Cython import Tempita
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTBATCH_DEBUG", "") not in ("", "0")
SANITIZE = os.environ.get("FASTBATCH_SANITIZE", "") not in ("", "0")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
}

# (C type, name suffix, lanes in 64 bytes, square root): one rendering of each template per row
TYPES = [("float", "f", 16, "sqrtf"), ("double", "d", 8, "sqrt")]
TEMPLATES = ["fastbatch/_kernel.pyx.tp", "fastbatch/_kernel_dense.h.tp"]

# Portable flags only: nothing tuned to the build machine's CPU in what others install
# (the kernel picks AVX2 / AVX-512 code at load time instead, see _kernel_dense.h.tp).
# -fno-math-errno: sqrt need not set errno, so the optimizers' loops vectorise.
COMPILE_ARGS = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno"]
LINK_ARGS = []
if SANITIZE:
    COMPILE_ARGS += ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"]
    LINK_ARGS += ["-fsanitize=address"]


def render(template):
    """template.tp -> template, when the template is newer (or the output is missing)."""
    out = template[:-len(".tp")]
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(template):
        return
    with open(template) as f:
        text = Tempita.sub(f.read(), TYPES=TYPES)
    with open(out, "w") as f:
        f.write(text)


for template in TEMPLATES:
    render(template)

extensions = [
    Extension(
        "fastbatch._codes",
        ["fastbatch/_codes.pyx"],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS,
    ),
    Extension(
        "fastbatch._kernel",
        ["fastbatch/_kernel.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS,
        depends=["fastbatch/_codes.pxd", "fastbatch/_kernel_dense.h", "fastbatch/_kernel_threads.h"],
    ),
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES,
                          force=DEBUG or SANITIZE, annotate=False),
)
