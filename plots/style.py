"""Shared look of every figure and table: estimator colours, display names, fonts.

One fixed estimator -> colour mapping is used by every figure so that, e.g., DisARM
is the same red in the training curves and in the toy plots. Names the suite does not
know yet get a colour from a fallback palette chosen by a stable hash of the name
(``zlib.crc32``, not Python's salted ``hash``), so an unknown estimator keeps its
colour from one run of the report to the next.
"""

from __future__ import annotations

import math
import re
import zlib

import matplotlib

matplotlib.use("Agg")

# Known estimators, in the order they appear in legends and table columns.
ESTIMATOR_ORDER = (
    "reinforce_loo",
    "arm",
    "disarm",
    "relax",
    "vimco",
    "local_disarm",
    "local_disarm_sym",
)

ESTIMATOR_COLOURS = {
    "reinforce_loo": "#2ca02c",  # green
    "arm": "#1f77b4",  # blue
    "disarm": "#d62728",  # red
    "relax": "#9467bd",  # purple
    "vimco": "#ff7f0e",  # orange
    "local_disarm": "#8c564b",  # brown
    "local_disarm_sym": "#e377c2",  # pink
}

# For names not above; none of these is used by a known estimator.
FALLBACK_COLOURS = (
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
)

ESTIMATOR_LABELS = {
    "reinforce_loo": "REINFORCE LOO",
    "arm": "ARM",
    "disarm": "DisARM",
    "relax": "RELAX",
    "vimco": "VIMCO",
    "local_disarm": "Local DisARM",
    "local_disarm_sym": "Local DisARM (sym.)",
}

# Families whose size is part of the name ("vimco_10", "local_disarm_5"), as in
# estimators/__init__.py. Members take their family's colour, lighter for larger sizes.
ESTIMATOR_FAMILIES = ("reinforce_loo", "vimco", "local_disarm", "local_disarm_sym")
# Families that train a multi-sample bound: a member with size n costs
# MULTISAMPLE_EVALS_PER_UNIT[family] * n evaluations of f and is evaluated with the
# bound of that many samples (VIMCO with 2m samples against local DisARM with m pairs).
MULTISAMPLE_EVALS_PER_UNIT = {"vimco": 1, "local_disarm": 2, "local_disarm_sym": 2}
FAMILY_SIZE_SYMBOL = {"reinforce_loo": "K", "vimco": "K", "local_disarm": "m",
                      "local_disarm_sym": "m"}

DATASET_ORDER = ("mnist", "fashion_mnist", "omniglot")
# Hierarchical models "<base>_<n>layer" (n stochastic layers) follow their base models,
# in numeric order of n; see order_models.
MODEL_ORDER = ("linear", "nonlinear")

# The Omniglot used here is derived by this suite (PROTOCOL section 4); every place it
# is shown carries a marker and this footnote.
OMNIGLOT_MARK = "*"
OMNIGLOT_FOOTNOTE = (
    "* Omniglot-28 derived by this suite from the 105x105 originals; "
    "not directly comparable with the paper's Omniglot numbers."
)

DATASET_LABELS = {
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "omniglot": "Omniglot-28" + OMNIGLOT_MARK,
}

MODEL_LABELS = {"linear": "linear", "nonlinear": "nonlinear"}
_LAYERED_MODEL = re.compile(r"(.+)_(\d+)layer")

# Sizes in inches. A single paper column is about 3.25-3.5 in wide, a full text
# width about 6.75-7 in.
COLUMN_WIDTH = 3.4
TEXT_WIDTH = 6.9

RC_PARAMS = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "figure.titlesize": 9,
    "lines.linewidth": 1.2,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "legend.frameon": False,
    "savefig.dpi": 200,
    # Embed TrueType fonts so the PDFs are accepted by paper submission systems.
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}


def estimator_family(name) -> tuple[str, int] | None:
    """("vimco", 10) for "vimco_10"; None for names that are not "<family>_<int>"."""
    m = re.fullmatch(r"(.+)_(\d+)", str(name))
    if m and m.group(1) in ESTIMATOR_FAMILIES:
        return m.group(1), int(m.group(2))
    return None


def multisample_evaluations(name) -> int | None:
    """Evaluations of f per training example for a multi-sample estimator name, which
    is also the K of the bound it is evaluated with: vimco_K -> K, local_disarm_m and
    local_disarm_sym_m -> 2m. None for other names."""
    fam = estimator_family(name)
    if fam is None or fam[0] not in MULTISAMPLE_EVALS_PER_UNIT:
        return None
    return MULTISAMPLE_EVALS_PER_UNIT[fam[0]] * fam[1]


def _mix(hex_colour: str, other: float, t: float) -> str:
    rgb = matplotlib.colors.to_rgb(hex_colour)
    return matplotlib.colors.to_hex([c + (other - c) * t for c in rgb])


def estimator_colour(name: str) -> str:
    """Colour for an estimator name; stable fallback for names not in the table.

    A family member ("vimco_10") gets its family's colour, darker for small sizes and
    lighter for large ones, so that equal-cost members of different families (vimco_10,
    local_disarm_5) are distinct hues of the same depth."""
    if name in ESTIMATOR_COLOURS:
        return ESTIMATOR_COLOURS[name]
    fam = estimator_family(name)
    if fam is not None:
        family, size = fam
        level = multisample_evaluations(name) or size
        # level 1 -> 30% towards black, 20 or more -> 35% towards white.
        t = min(1.0, math.log(max(level, 1)) / math.log(20.0))
        base = ESTIMATOR_COLOURS[family]
        if t < 0.5:
            return _mix(base, 0.0, 0.3 * (1 - 2 * t))
        return _mix(base, 1.0, 0.35 * (2 * t - 1))
    idx = zlib.crc32(str(name).encode("utf-8")) % len(FALLBACK_COLOURS)
    return FALLBACK_COLOURS[idx]


def estimator_label(name: str) -> str:
    if name in ESTIMATOR_LABELS:
        return ESTIMATOR_LABELS[name]
    fam = estimator_family(name)
    if fam is not None:
        family, size = fam
        label, size_text = ESTIMATOR_LABELS[family], f"{FAMILY_SIZE_SYMBOL[family]}={size}"
        if label.endswith(")"):  # "Local DisARM (sym.)" -> "Local DisARM (sym., m=5)"
            return f"{label[:-1]}, {size_text})"
        return f"{label} ({size_text})"
    return str(name)


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, str(name))


def model_label(name: str) -> str:
    if name in MODEL_LABELS:
        return MODEL_LABELS[name]
    m = _LAYERED_MODEL.fullmatch(str(name))
    if m:
        return f"{m.group(2)}-layer {model_label(m.group(1))}"
    return str(name)


def cell_title(dataset: str, model: str) -> str:
    return f"{dataset_label(dataset)}, {model_label(model)} model"


def is_omniglot(dataset: str) -> bool:
    return str(dataset).lower().startswith("omniglot")


def _ordered(names, order):
    names = list(dict.fromkeys(str(n) for n in names))
    known = [n for n in order if n in names]
    unknown = sorted(n for n in names if n not in order)
    return known + unknown


def order_estimators(names):
    """Known estimators in the canonical order, then family members ("vimco_10") by
    cost (evaluations of f; equal-cost members of different families side by side, in
    the family order), then other names alphabetically."""
    names = list(dict.fromkeys(str(n) for n in names))
    known = [n for n in ESTIMATOR_ORDER if n in names]
    members = [n for n in names if n not in ESTIMATOR_ORDER and estimator_family(n)]

    def member_key(n):
        family, size = estimator_family(n)
        return (multisample_evaluations(n) or size, ESTIMATOR_FAMILIES.index(family), size)

    members.sort(key=member_key)
    unknown = sorted(n for n in names if n not in ESTIMATOR_ORDER and n not in members)
    return known + members + unknown


def order_datasets(names):
    return _ordered(names, DATASET_ORDER)


def order_models(names):
    """linear, nonlinear, then layered models "<base>_<n>layer" by base and n
    (linear_2layer, linear_3layer, linear_4layer, ..., linear_10layer), then others
    alphabetically."""
    names = list(dict.fromkeys(str(n) for n in names))
    known = [n for n in MODEL_ORDER if n in names]
    layered = [n for n in names if n not in MODEL_ORDER and _LAYERED_MODEL.fullmatch(n)]

    def layered_key(n):
        m = _LAYERED_MODEL.fullmatch(n)
        base = m.group(1)
        rank = MODEL_ORDER.index(base) if base in MODEL_ORDER else len(MODEL_ORDER)
        return (rank, base, int(m.group(2)))

    layered.sort(key=layered_key)
    unknown = sorted(n for n in names if n not in MODEL_ORDER and n not in layered)
    return known + layered + unknown


def format_steps(x, _pos=None) -> str:
    """Tick label for a step count: 0, 500, 250k, 1M, 1.5M."""
    x = float(x)
    ax = abs(x)
    if ax >= 1e6:
        s = f"{x / 1e6:.2f}".rstrip("0").rstrip(".")
        return s + "M"
    if ax >= 1e3:
        s = f"{x / 1e3:.1f}".rstrip("0").rstrip(".")
        return s + "k"
    return f"{x:g}"
