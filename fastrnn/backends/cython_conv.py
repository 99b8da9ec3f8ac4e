"""The ConvLSTM kernel on the Cython backend's loops (src_kernels/convlstm.pyx), run by
:class:`~fastrnn.backends.conv_host.ConvKernel`; unavailable where the extensions were not
built (the Numba kernel then serves)."""

from __future__ import annotations

from .conv_host import ConvKernel

try:
    from .._kernels import convlstm
except ImportError as exc:  # not built: reported by available()
    _missing: ImportError | None = exc
else:
    _missing = None
    _kernel = ConvKernel(convlstm.forward, convlstm.backward, convlstm.weight_grads)
    forward, backward = _kernel.forward, _kernel.backward


def available() -> tuple[bool, str]:
    if _missing is not None:
        return False, f"extensions not built ({_missing})"
    return True, "Cython loops compiled at install"
