"""For bench/gpu/check.sh only (on PYTHONPATH there): numba-cuda 0.30.4 registers
``np.row_stack`` when it compiles a kernel, and numpy 2.5 removed it; the alias lets the
check run on such an image (the lent H100 of 2026-11-24 paired them). Without it fastrnn
reports the CUDA backend unavailable there, with that reason."""

import numpy

if not hasattr(numpy, "row_stack"):
    numpy.row_stack = numpy.vstack  # noqa: NPY201  (restoring it is the point)
