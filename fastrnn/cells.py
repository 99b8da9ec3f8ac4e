"""Every recurrent cell fastrnn knows, each described once.

A :class:`Cell` says what the rest of the library needs to know about a cell without running
it: its gate count, its states, what a step saves for backward, how its biases enter, its
parameters in PyTorch's names, shapes and gate order, and its torch.nn counterpart. The stack,
the modules, the torch adapter, the model API, the kernel contract and the driver of the
compiled backends all read this table; none of them compares cell names.

Adding a cell = one entry in :data:`CELLS` + one time loop per backend (keyed by
:attr:`Cell.loop`) + its NumPy reference (README: "How the code is organised").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: LayerNorm's epsilon: norm(v) = (v - mean(v)) / sqrt(var(v) + EPS), biased variance
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class NormSite:
    """A LayerNorm inside a cell's time loop: ``gain * hat + shift``, hat = norm(a row).

    gain / shift: kernel arguments of the cell's ``norms`` (shift None: none here, e.g. the
    recurrent product's, whose shift is b_hh); hat: the saved buffer holding hat; grad: the
    gradient buffer holding d(gain * hat + shift) ("dg_rec" or one of ``Cell.loop_grads``).
    The driver turns these into the gain's and shift's gradients after the loop.
    """

    gain: str
    shift: str | None
    hat: str
    grad: str


@dataclass(frozen=True)
class Cell:
    """One recurrent cell. Widths are in units of the hidden size H unless said otherwise."""

    name: str
    #: which time loop runs it (the key of every backend's loop table); cells that differ by
    #: a flag only (the Elman nonlinearities) share one loop
    loop: str
    #: G: pre-activation blocks of w_ih / w_hh, in PyTorch's order
    gates: int
    #: states carried between steps: "h" (width Hp, the output) and, for LSTM, "c" (width H)
    states: tuple[str, ...]
    #: per-step buffers a training forward saves besides the state entering each step
    #: (h_prev): (name, width), in the order the time loops take them; a width is a multiple
    #: of H, or (multiple of H, extra columns) (see :meth:`width`)
    saved: tuple[tuple[str, int | tuple[int, int]], ...]
    #: torch.nn's class name and the extra constructor arguments that select this cell
    torch_class: str
    torch_args: tuple[tuple[str, Any], ...] = ()
    #: torch.nn.RNNBase's ``mode`` string (fastrnn.torch's class name for cells torch lacks)
    torch_mode: str = ""
    #: Elman's activation: True for relu, False for tanh (other cells ignore it)
    relu: bool = False
    #: whether an output projection h = w_hr (o * tanh c) is defined (LSTM's proj_size;
    #: the Jordan cells' output layer, which they require)
    projection: bool = False
    #: Jordan cells: the output layer's activation (one of :data:`OUTPUT_ACTS`); the carried
    #: state h is the output y = act_y(w_hr u + b_hr) of width Hp = the output size, where
    #: u = act(w_ih x + b_ih + w_hh y_prev + b_hh) is the hidden layer (width H). Empty for
    #: every other cell.
    output_act: str = ""
    #: GRU: the recurrent side of a gate is not the input side's twin (n = tanh(W_in x +
    #: b_in + r * (W_hn h + b_hn))): b_hh stays inside the loop instead of folding into the
    #: input projection with b_ih, and backward keeps a separate recurrent-side gradient
    split_recurrent: bool = False
    #: the cell's own parameter vectors besides torch's four, (kernel argument, width in H or
    #: "out" for Hp), given to the kernels as ``norms``: the LayerNorm cells' gains and
    #: shifts, the input side's gain first ("ln_ih", normalised by the driver before the
    #: loop), and the Jordan cells' output bias "b_hr"; the time loops get them in this order
    #: (after ln_ih)
    norms: tuple[tuple[str, int | str], ...] = ()
    #: the entries of ``norms`` that are biases: present only when the layer has biases,
    #: initialised as the other biases are (the Jordan cells' output bias "b_hr")
    bias_norms: tuple[str, ...] = ()
    #: the LayerNorms inside the time loop (see :class:`NormSite`)
    norm_sites: tuple[NormSite, ...] = ()
    #: gradient buffers the backward loop writes besides dg_in / dg_rec: (name, width in H);
    #: "d_hw" (LayerNorm cells) is the gradient of the raw product h @ w_hh^T, which dw_hh
    #: then takes instead of dg_rec
    loop_grads: tuple[tuple[str, int], ...] = ()

    def initial_norm(self, arg: str) -> float | None:
        """A LayerNorm parameter's initial value: 0 for a shift, 1 for a gain; None for one of
        ``bias_norms`` (it starts as the other biases do)."""
        if arg in self.bias_norms:
            return None
        return 0.0 if any(site.shift == arg for site in self.norm_sites) else 1.0

    def vector_args(self, bias: bool) -> tuple[str, ...]:
        """The kernel arguments of ``norms`` a layer has (those of ``bias_norms`` only with
        biases)."""
        return tuple(arg for arg, _ in self.norms if bias or arg not in self.bias_norms)

    @property
    def input_norm(self) -> bool:
        """Whether the input projection is layer-normalised (gain ``norms[0]``, "ln_ih")."""
        return bool(self.norms) and self.norms[0][0] == "ln_ih"

    @property
    def act_code(self) -> int:
        """What the time loops get in their ``relu`` argument: 1 for a relu hidden layer, 0
        for tanh, plus, for the Jordan cells, 2 * the index of the output activation in
        :data:`OUTPUT_ACTS` (0 identity, 1 tanh, 2 sigmoid)."""
        return int(self.relu) + (2 * OUTPUT_ACTS.index(self.output_act) if self.output_act
                                 else 0)

    @staticmethod
    def width(spec: int | str | tuple[int, int], H: int, Hp: int = 0) -> int:
        """Columns of a buffer or vector whose width is `spec` (k: k*H; (k, e): k*H + e;
        "out": the output width Hp)."""
        if spec == "out":
            return Hp
        k, extra = (spec, 0) if isinstance(spec, int) else spec
        return k * H + extra

    def state_width(self, state: str, H: int, Hp: int) -> int:
        """Width of a state: h is the (projected) output Hp, c the cell's H."""
        return Hp if state == "h" else H

    def parameters(self, layer: int, direction: int, layer_input: int, H: int, P: int = 0,
                   bias: bool = True) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Kernel argument -> (torch's parameter name, shape) of one layer and direction.

        layer_input: the layer's input width; P: projection size (0: none)."""
        if P and not self.projection:
            raise ValueError(f"proj_size is only supported by LSTM, not {self.name}")
        if self.output_act and not P:
            raise ValueError(f"{self.name} needs its output size (P > 0)")
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        GH, Hp = self.gates * H, P or H
        rec = "yh" if self.output_act else "hh"  # Jordan: the recurrence comes from y
        params = {"w_ih": ("weight_ih" + suffix, (GH, layer_input)),
                  "w_hh": (f"weight_{rec}" + suffix, (GH, Hp))}
        if bias:
            params["b_ih"] = ("bias_ih" + suffix, (GH,))
            params["b_hh"] = (f"bias_{rec}" + suffix, (GH,))
        if P:
            params["w_hr"] = (("weight_hy" if self.output_act else "weight_hr") + suffix, (P, H))
        widths = dict(self.norms)
        for arg in self.vector_args(bias):
            params[arg] = (NORM_NAMES[arg] + suffix, (self.width(widths[arg], H, Hp),))
        return params

    def projected_output(self, saved: dict[str, Any], H: int) -> tuple[Any, ...]:
        """The factors of what w_hr multiplied at each step, as views of the saved buffers
        ([T,B,H] each; the projection's weight gradient needs their product): LSTM's o and
        tanh(c), a Jordan cell's hidden layer u."""
        if self.output_act:
            return (saved["hidden"],)
        return saved["gates"][:, :, 3 * H:], saved["tanh_c"]


def _elman(relu: bool) -> Cell:
    act = "relu" if relu else "tanh"
    return Cell(f"rnn_{act}", "rnn", 1, ("h",), (("h_new", 1),), "RNN",
                (("nonlinearity", act),), f"RNN_{act.upper()}", relu=relu)


def _jordan(relu: bool, output_act: str) -> Cell:
    act = "relu" if relu else "tanh"
    name = f"jordan_{act}_{output_act}"
    return Cell(name, "jordan", 1, ("h",), (("hidden", 1), ("y_out", "out")), "JordanRNN",
                (("nonlinearity", act), ("output_nonlinearity", output_act)), name.upper(),
                relu=relu, projection=True, output_act=output_act, norms=(("b_hr", "out"),),
                bias_norms=("b_hr",))


#: the Jordan cells' output activations, in the order of their code (:attr:`Cell.act_code`)
OUTPUT_ACTS = ("identity", "tanh", "sigmoid")

#: kernel argument of a cell's own vector -> torch-style parameter name (before the suffix)
NORM_NAMES = {"ln_ih": "ln_ih_weight", "ln_hh": "ln_hh_weight", "ln_c_w": "ln_c_weight",
              "ln_c_b": "ln_c_bias", "b_hr": "bias_hy"}


#: name -> cell. The Elman nonlinearities are two cells, as in PyTorch's modes.
CELLS: dict[str, Cell] = {cell.name: cell for cell in (
    _elman(relu=False),
    _elman(relu=True),
    # i, f, g, o; saves the gates, the cell state entering each step and tanh of the new one
    Cell("lstm", "lstm", 4, ("h", "c"), (("gates", 4), ("c_prev", 1), ("tanh_c", 1)),
         "LSTM", torch_mode="LSTM", projection=True),
    # r, z, n; saves the gates and W_hn h + b_hn (r's gradient needs it)
    Cell("gru", "gru", 3, ("h",), (("gates", 3), ("hw_n", 1)), "GRU", torch_mode="GRU",
         split_recurrent=True),
    # LayerNorm LSTM (Ba et al. 2016): a = g_ih norm(x W_ih^T) + g_hh norm(h W_hh^T) + b_ih +
    # b_hh; c' = f c + i g; h' = o tanh(g_c norm(c') + b_c). Saves the gates, c entering the
    # step, norm(h W_hh^T), norm(c'), tanh(g_c norm(c') + b_c) and the two rows' 1/std.
    Cell("layernorm_lstm", "ln_lstm", 4, ("h", "c"),
         (("gates", 4), ("c_prev", 1), ("hw_hat", 4), ("c_hat", 1), ("tanh_c", 1),
          ("rstd", (0, 2))), "LayerNormLSTM", torch_mode="LayerNormLSTM",
         norms=(("ln_ih", 4), ("ln_hh", 4), ("ln_c_w", 1), ("ln_c_b", 1)),
         norm_sites=(NormSite("ln_hh", None, "hw_hat", "dg_rec"),
                     NormSite("ln_c_w", "ln_c_b", "c_hat", "d_cn")),
         loop_grads=(("d_hw", 4), ("d_cn", 1))),
    # LayerNorm GRU: gi = g_ih norm(x W_ih^T) + b_ih; gh = g_hh norm(h W_hh^T) + b_hh, then
    # PyTorch's GRU on gi, gh. Saves the gates, gh's n block, norm(h W_hh^T) and its 1/std.
    Cell("layernorm_gru", "ln_gru", 3, ("h",),
         (("gates", 3), ("hw_n", 1), ("hw_hat", 3), ("rstd", (0, 1))), "LayerNormGRU",
         torch_mode="LayerNormGRU", split_recurrent=True, norms=(("ln_ih", 3), ("ln_hh", 3)),
         norm_sites=(NormSite("ln_hh", None, "hw_hat", "dg_rec"),),
         loop_grads=(("d_hw", 3),)),
    # Jordan network (Jordan 1986): u = act(W_ih x + b_ih + W_yh y_prev + b_yh); y =
    # act_y(W_hy u + b_hy); the recurrence goes through the output y (the carried state,
    # width Hp = the output size). Saves u and y; act tanh or relu, act_y per OUTPUT_ACTS.
    *(_jordan(relu, out) for relu in (False, True) for out in OUTPUT_ACTS),
)}
#: other names the model API and the command line accept
ALIASES = {"rnn": "rnn_tanh", "jordan": "jordan_tanh_identity"}


def get(cell: str | Cell) -> Cell:
    """The cell called `cell` (or an alias), or a ValueError listing the known ones."""
    if isinstance(cell, Cell):
        return cell
    name = ALIASES.get(cell, cell) if isinstance(cell, str) else cell
    if name not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)} or an alias of one "
                         f"({', '.join(f'{a}: {n}' for a, n in ALIASES.items())}), got {cell!r}")
    return CELLS[name]


def by_torch_mode(mode: str) -> Cell:
    """The cell of a torch.nn.RNNBase ``mode`` ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")."""
    for cell in CELLS.values():
        if cell.torch_mode == mode:
            return cell
    raise ValueError(f"unknown mode {mode!r}; modes: {[c.torch_mode for c in CELLS.values()]}")
