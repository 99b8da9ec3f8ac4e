"""Build script: compiles every Cython source in src_kernels/ into fastrnn._kernels.<name>.

The Cython kernels are optional at run time: if no compiler is at hand, or a source fails to
build, the package still installs and the other backends serve (``fastrnn info`` says why the
Cython backend is missing). Environment:

- FASTRNN_REQUIRE_CYTHON=1: a failed build is an error (CI sets it).
- FASTRNN_PORTABLE=1: no -march=native (for wheels that run on other CPUs).

Only ``team`` is built with OpenMP: it runs batch parts on libgomp's thread team.
"""

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
SRC = "src_kernels"


def _extensions() -> list:
    sources = sorted((HERE / SRC).glob("*.pyx"))
    if not sources:
        return []
    import numpy
    from Cython.Build import cythonize
    from setuptools import Extension

    # -fno-trapping-math lets gcc vectorise the gate passes (DESIGN.md); no -ffast-math, which
    # would break the saturation of sigmoid at large |x|. -fopenmp: the team of team.pyx, the
    # products of few rows split over it (packed.h), the `omp simd` reductions of the
    # LayerNorm row statistics.
    flags = ["-O3", "-fno-trapping-math", "-fopenmp"]
    if os.environ.get("FASTRNN_PORTABLE") != "1":
        flags.append("-march=native")
    extensions = [
        Extension(
            f"fastrnn._kernels.{pyx.stem}",
            [f"{SRC}/{pyx.name}"],
            include_dirs=[numpy.get_include(), SRC],
            extra_compile_args=flags,
            extra_link_args=["-fopenmp"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            depends=[str(p.relative_to(HERE)) for p in (HERE / SRC).glob("*.[hp]x*")]
            + [str(p.relative_to(HERE)) for p in (HERE / SRC).glob("*.h")],
        )
        for pyx in sources
    ]
    return cythonize(extensions, include_path=[SRC], quiet=True,
                     compiler_directives={"language_level": "3"})


class OptionalBuildExt(build_ext):
    """Build each extension on its own; a failure is reported, not fatal (unless required)."""

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # compiler missing or source error
            if os.environ.get("FASTRNN_REQUIRE_CYTHON") == "1":
                raise
            print(f"WARNING: fastrnn could not build {ext.name}: {exc}", file=sys.stderr)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
