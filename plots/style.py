"""Shared look of every figure and table: estimator colours, labels and order, dataset titles, fonts.

Nothing here parses an estimator's name. What the suite knows about an estimator
(its label, family, size, number of ``f`` evaluations) comes from each run's
``config.json`` (``estimator_info``, read by ``plots.loading``); ``Catalogue`` turns
that into the order, labels and colours every figure and table uses:

* colour and line style: a fixed colour per *family* (``FAMILY_COLOURS``,
  presentation only), so that DisARM is the same red in every figure. The members of
  one family the catalogue knows (``double_cv_2``, ``double_cv_3``) are ranked by
  cost: the cheapest has the family's colour and a solid line, each costlier one a
  clearly lighter (or, for a light family colour, darker) shade and its own line style (``MEMBER_LINESTYLES``), so that
  every curve can be told apart at a glance. A family not in the map gets a colour
  from ``FALLBACK_COLOURS`` chosen by a stable hash of its name (``zlib.crc32``, not
  Python's salted ``hash``), so it keeps its colour from one report to the next.
* label: ``estimator_info.label``, with ``K=<num_f_evals>`` appended where the
  estimators shown together hold several sizes of one family.
* order: by cost (evaluations of ``f``), then by family (``FAMILY_ORDER``), then size
  and name; estimators whose cost is unknown come last.
"""

from __future__ import annotations

import math
import re
import warnings
import zlib

with warnings.catch_warnings():
  # matplotlib's font and mathtext parsers, built when first imported, call pyparsing's
  # camelCase API, which pyparsing 3.3 deprecates: noise in every caller's warnings.
  warnings.simplefilter("ignore", DeprecationWarning)
  import matplotlib
  import matplotlib.figure  # noqa: F401
  import matplotlib.mathtext  # noqa: F401

matplotlib.use("Agg")

# Families in the order they appear among estimators of equal cost (the DisARM paper's
# table order first, then the estimators that came after it).
FAMILY_ORDER = (
  "reinforce_loo",
  "arm",
  "disarm",
  "arms",
  "double_cv",
  "rodeo",
  "relax",
  "vimco",
  "local_disarm",
  "local_disarm_sym",
)

FAMILY_COLOURS = {
  "reinforce_loo": "#2ca02c",  # green
  "arm": "#1f77b4",  # blue
  "disarm": "#d62728",  # red
  "relax": "#9467bd",  # purple
  "vimco": "#ff7f0e",  # orange
  "local_disarm": "#8c564b",  # brown
  "local_disarm_sym": "#e377c2",  # pink
  "arms": "#17becf",  # cyan
  "double_cv": "#bcbd22",  # olive
  "rodeo": "#393b79",  # indigo
}

# For families not above; none of these is used by a family above.
FALLBACK_COLOURS = (
  "#7f7f7f",
  "#637939",
  "#8c6d31",
  "#843c39",
  "#7b4173",
  "#3182bd",
  "#e6550d",
  "#31a354",
  "#756bb1",
  "#636363",
)

# The cheapest member of a family has the family's colour; the costliest is moved this far
# towards white (a dark family colour) or black (a light one), those between evenly (a
# ratio of cost would leave K = 2 and K = 3 nearly the same shade). Moving a light colour
# towards white would leave it too pale to read on white.
SHADE_SPAN = 0.5
# Relative luminance above which a family colour counts as light.
LIGHT_LUMINANCE = 0.45
# Line styles of a family's members, cheapest first (cycled). Published reference lines
# are grey dashes, so members avoid plain dashes.
MEMBER_LINESTYLES = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))

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


def _mix(hex_colour: str, other: float, t: float) -> str:
  rgb = matplotlib.colors.to_rgb(hex_colour)
  return matplotlib.colors.to_hex([c + (other - c) * t for c in rgb])


def _luminance(hex_colour: str) -> float:
  r, g, b = matplotlib.colors.to_rgb(hex_colour)
  return 0.2126 * r + 0.7152 * g + 0.0722 * b


def family_colour(family: str) -> str:
  """The fixed colour of a family; a stable fallback colour for families not in the map."""
  if family in FAMILY_COLOURS:
    return FAMILY_COLOURS[family]
  return FALLBACK_COLOURS[zlib.crc32(str(family).encode("utf-8")) % len(FALLBACK_COLOURS)]


def _known_int(value):
  """``value`` as an int, or None where it is missing or not a whole number."""
  if value is None or isinstance(value, bool):
    return None
  try:
    f = float(value)
  except (TypeError, ValueError):
    return None
  return int(f) if math.isfinite(f) and f == int(f) else None


class Catalogue:
  """Order, labels and colours of estimators, from what their runs recorded about them.

  ``infos`` maps an estimator name to an object with ``label``, ``family``, ``size``
  and ``num_f_evals`` attributes (``plots.loading.EstimatorInfo``). A name it does
  not hold (an estimator seen only in the toy CSVs or in a basket column) is shown
  under its own name, in the fallback colour of a family of that name, after the
  estimators whose cost is known.
  """

  def __init__(self, infos=None):
    self.infos = dict(infos or {})

  def info(self, name):
    return self.infos.get(str(name))

  def family(self, name) -> str:
    info = self.info(name)
    return str(info.family) if info is not None and info.family else str(name)

  def num_f_evals(self, name):
    info = self.info(name)
    return _known_int(info.num_f_evals) if info is not None else None

  def size(self, name):
    info = self.info(name)
    return _known_int(info.size) if info is not None else None

  def base_label(self, name) -> str:
    info = self.info(name)
    return str(info.label) if info is not None and info.label else str(name)

  def _member_rank(self, name):
    """(rank, count): where ``name`` stands among the known estimators of its family, cheapest first."""
    family = self.family(name)
    members = [n for n in self.infos if self.family(n) == family]
    if str(name) not in members:
      members.append(str(name))
    members.sort(key=lambda n: (self.num_f_evals(n) is None, self.num_f_evals(n) or 0, self.size(n) or 0, n))
    return members.index(str(name)), len(members)

  def colour(self, name) -> str:
    """The family's colour for its cheapest member; evenly lighter shades for the costlier ones."""
    base = family_colour(self.family(name))
    rank, count = self._member_rank(name)
    if count < 2:
      return base
    towards = 0.0 if _luminance(base) > LIGHT_LUMINANCE else 1.0
    return _mix(base, towards, SHADE_SPAN * rank / (count - 1))

  def linestyle(self, name):
    """Solid for a family's cheapest member; another style for each costlier one."""
    rank, _ = self._member_rank(name)
    return MEMBER_LINESTYLES[rank % len(MEMBER_LINESTYLES)]

  def order(self, names) -> list:
    """Distinct names by cost, then family order, size and name; unknown cost last."""
    names = list(dict.fromkeys(str(n) for n in names))

    def key(name):
      evals = self.num_f_evals(name)
      family = self.family(name)
      rank = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
      return (evals is None, evals or 0, rank, family, self.size(name) or 0, name)

    return sorted(names, key=key)

  def labels(self, names) -> dict:
    """{name: label} for estimators shown together.

    ``K=<num_f_evals>`` is appended to every member of a family that appears here
    with several costs; two names that would still share a label get their names.
    """
    names = list(dict.fromkeys(str(n) for n in names))
    costs = {}
    for n in names:
      costs.setdefault(self.family(n), set()).add(self.num_f_evals(n))
    out = {}
    for n in names:
      label = self.base_label(n)
      if len(costs[self.family(n)]) > 1:
        evals = self.num_f_evals(n)
        label += f" (K={evals if evals is not None else '?'})"
      out[n] = label
    seen = {}
    for n, label in out.items():
      seen.setdefault(label, []).append(n)
    for label, same in seen.items():
      if len(same) > 1:
        for n in same:
          out[n] = f"{label} [{n}]"
    return out

  def label(self, name, among=None) -> str:
    """The label of ``name`` shown beside the estimators ``among`` (default: alone)."""
    among = list(among) if among is not None else []
    return self.labels(among + [name])[str(name)]


def dataset_label(name: str) -> str:
  return DATASET_LABELS.get(name, str(name))


def model_label(name: str) -> str:
  if name in MODEL_LABELS:
    return MODEL_LABELS[name]
  m = _LAYERED_MODEL.fullmatch(str(name))
  if m:
    return f"{m.group(2)}-layer {model_label(m.group(1))}"
  return str(name)


def is_layered_model(name: str) -> bool:
  """A hierarchical model "<base>_<n>layer" (several stochastic layers)."""
  return _LAYERED_MODEL.fullmatch(str(name)) is not None


def cell_title(dataset: str, model: str) -> str:
  return f"{dataset_label(dataset)}, {model_label(model)} model"


def is_omniglot(dataset: str) -> bool:
  return str(dataset).lower().startswith("omniglot")


def _ordered(names, order):
  names = list(dict.fromkeys(str(n) for n in names))
  known = [n for n in order if n in names]
  unknown = sorted(n for n in names if n not in order)
  return known + unknown


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


def format_count(n) -> str:
  """1000000 -> '1,000,000' (step counts in prose)."""
  k = _known_int(n)
  return f"{k:,}" if k is not None else "unknown"
