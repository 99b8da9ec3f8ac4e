"""Build script: compiles every Cython source in src_kernels/ into fastrnn._kernels.<name>.

The Cython kernels are optional at run time: if no compiler is at hand, or a source fails to
build, the package still installs and the other backends serve (``fastrnn info`` says why the
Cython backend is missing). Set FASTRNN_REQUIRE_CYTHON=1 to make a failed build an error.
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

    compile_args = ["-O3", "-fopenmp", "-fno-trapping-math"]
    extensions = [
        Extension(
            f"fastrnn._kernels.{pyx.stem}",
            # a kernel's C helpers are named <stem>_*.c beside its .pyx
            [f"{SRC}/{pyx.name}", *sorted(f"{SRC}/{c.name}"
                                          for c in (HERE / SRC).glob(f"{pyx.stem}_*.c"))],
            include_dirs=[numpy.get_include(), SRC],
            extra_compile_args=compile_args,
            extra_link_args=["-fopenmp"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for pyx in sources
    ]
    return cythonize(extensions, compiler_directives={"language_level": "3"}, quiet=True)


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
