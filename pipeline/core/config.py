"""The typed configuration: one frozen dataclass per section of ``params.yaml``.

``params.yaml`` documents every knob; the dataclasses below hold the one copy of each
default, equal to the value ``params.yaml`` ships with (``tests/test_config.py`` checks
that they agree).  :func:`load_config` reads the file once and builds a :class:`Config`;
every stage receives its section object, never a dict.

Every value is checked when the file is read.  A misspelt key, a wrong type or a value
out of range is refused with one line naming the key::

    params.yaml: labels.alpah: unknown key (did you mean alpha?)
    params.yaml: train.epochs: expected a number > 0, got 'two'

which the command line prints as ``mixseg <stage>: error: ...`` with exit status 2.
A section missing from the file takes its defaults.

Box strategy names carry suffixes (``ucm_t0.5``, ``ucm_paper_a0.3``): they are resolved
here, once, into a :class:`BoxStrategy` whose fields are the knobs the strategy uses
(:meth:`LabelsConfig.box_strategy`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal, Optional

import yaml

from pipeline.core.errors import InputError

PARAMS_FILE = "params.yaml"

#: Box strategies; the index is the ``strategy`` code stored per box in the label shards.
STRATEGIES = ("ucm", "raw_box", "grabcut", "hard", "external")
#: Strategies built on the UCM rule (they need a UCM and take ``_t`` / ``_a`` / rule suffixes).
UCM_STRATEGIES = ("ucm", "hard")
#: How the UCM rule picks the object's region (README, "Box labels").
RULES = ("enclosed", "paper")
#: The paper's thresholds and alpha (section 3.2): ``rule: paper`` with these reproduces it.
PAPER_THRESHOLDS = (0.25, 0.5, 0.75)
PAPER_ALPHA = 0.30
#: The trainable networks (``train/networks.py``) and the variants of the paper's Table 2.
ARCHS = ("small", "fcn32s", "fcn16s", "fcn8s", "deeplab_largefov", "deeplab_aspp_resnet50",
         "deeplab_aspp_resnet101", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
VARIANTS = ("p", "p+i", "p+b", "p+b+i", "ub")
SOURCE_KINDS = ("synthetic", "voc2012", "siftflow", "boxes", "camvid", "classmaps", "coco")

OnError = Literal["fail", "skip"]


class ConfigError(ValueError):
    """A bad value: ``key`` is its dotted path below the section (``thresholds``)."""

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")


def knob(default=dataclasses.MISSING, *, lo=None, hi=None, lo_open=False, hi_open=False, nonempty=False,
         factory=None):
    """A dataclass field with a range (``lo``/``hi``, closed unless ``*_open``) checked on load."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "nonempty": nonempty}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _range_text(m) -> str:
    lo, hi = m.get("lo"), m.get("hi")
    if lo is not None and hi is not None:
        return f"in {'(' if m['lo_open'] else '['}{lo:g}, {hi:g}{')' if m['hi_open'] else ']'}"
    if lo is not None:
        return f"{'>' if m['lo_open'] else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if m['hi_open'] else '<='} {hi:g}"
    return ""


def _in_range(v, m) -> bool:
    lo, hi = m.get("lo"), m.get("hi")
    return not ((lo is not None and (v <= lo if m["lo_open"] else v < lo)) or
                (hi is not None and (v >= hi if m["hi_open"] else v > hi)))


_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
          str: ("a string", "strings")}


def _describe(tp, m=None) -> str:
    """What a value of type ``tp`` looks like, for error messages."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    m = m or {}
    rng = _range_text(m)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return f"{_describe(inner[0], m)} or null"
    if origin is tuple:
        item = args[0]
        items = _NOUNS[item][1] if item in _NOUNS else f"values ({_describe(item)})"
        each = f" each {rng}" if rng else ""
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a {'non-empty ' if m.get('nonempty') else ''}list of {items}{each}"
        return f"a list of {len(args)} {items}{each}"
    if tp in _NOUNS:
        return f"{_NOUNS[tp][0]} {rng}".rstrip()
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _convert(value, tp, key: str, m: dict):
    """``value`` read from YAML as type ``tp`` (with the range of field metadata ``m``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(key, f"expected {_describe(tp, m)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key, m)
    if origin is Literal:
        if value not in args or isinstance(value, bool) != isinstance(args[0], bool):
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            raise ConfigError(key, f"expected one of {', '.join(str(a) for a in args)}, got {value!r}" +
                              (f" (did you mean {close[0]}?)" if close else ""))
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            if m.get("nonempty") and not value:
                raise bad
            return tuple(_convert(v, args[0], key, m) for v in value)
        if len(value) != len(args):
            raise bad
        return tuple(_convert(v, a, key, m) for v, a in zip(value, args))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is str:
        if not isinstance(value, str) or not value:
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad  # an int stays an int (1 and 1.0 are the same value; the written record keeps its form)
    if not _in_range(value, m):
        raise bad
    return value


def build(cls, data, where: str = ""):
    """An instance of the config dataclass ``cls`` from the mapping ``data`` read from YAML.

    Unknown keys, wrong types and out-of-range values raise :class:`ConfigError` naming
    the dotted key (``where`` is the path of ``data`` itself, e.g. ``labels.grabcut``).
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(where, f"expected a mapping, got {data!r}")
    data = cls.resolve(dict(data)) if hasattr(cls, "resolve") else data
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for k, v in data.items():
        key = f"{where}.{k}" if where else str(k)
        if k not in known:
            close = difflib.get_close_matches(str(k), list(known), n=1)
            raise ConfigError(key, "unknown key" + (f" (did you mean {close[0]}?)" if close else
                                                    f" (known: {', '.join(known)})"))
        kwargs[k] = _convert(v, hints[k], key, dict(known[k].metadata))
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}.{e.key}" if where else e.key, e.reason) from None


def record(cfg) -> dict:
    """The settings of a config object as plain JSON-able data (tuples as lists), init fields only."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return record(v)
        return [plain(x) for x in v] if isinstance(v, tuple) else v
    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


# ----------------------------------------------------------------------------- sections

@dataclass(frozen=True)
class SyntheticConfig:
    """``synthetic``: the embedded dataset, in the PASCAL VOC layout."""
    out: tuple[str, ...] = ("data/raw/synthetic",)
    num_train: int = knob(600, lo=1)
    num_val: int = knob(150, lo=0)
    height: int = knob(120, lo=8)
    width: int = knob(160, lo=8)
    num_classes: int = knob(12, lo=2, hi=64)
    seed: int = 0
    n_jobs: int = knob(2, lo=1)


@dataclass(frozen=True)
class Voc2012Options:
    sbd: bool = True


@dataclass(frozen=True)
class BoxesSourceOptions:
    images: str = "images"
    masks: Optional[str] = None
    tags: Optional[str] = None
    classes: Optional[str] = None
    val_list: Optional[str] = None


@dataclass(frozen=True)
class CamvidOptions:
    things: tuple[str, ...] = ("car", "pedestrian", "bicyclist")
    min_area: int = knob(150, lo=1)
    train_dirs: tuple[str, ...] = knob(("train",), nonempty=True)
    val_dirs: tuple[str, ...] = ("val",)


@dataclass(frozen=True)
class ClassmapsOptions:
    """``source.classmaps``: any fully labelled dataset -- images + single-channel class maps.

    ``train`` / ``val`` are (image folder, class-map folder) pairs under ``source.root``;
    a class map ``<id>.png`` belongs to the image ``<id>.*`` beside it.  ``val_list`` (a text
    file of ids, one a line) moves those training ids to val -- e.g. one half of MSRC's scene
    groups.  Boxes are the bounding boxes of 8-connected components of at least ``min_area``
    pixels of each class in ``things`` (``[]``: every class); tags are the classes present.
    ``background: true`` makes the dataset ``background`` + ``things`` (every other labelled
    pixel is background, the convention for judging box labels); ``false`` keeps the class
    list as it is (no background class: every pixel has a class, as in CamVid or Cityscapes).
    """
    train: tuple[tuple[str, str], ...] = knob((("images", "classmaps"),), nonempty=True)
    val: tuple[tuple[str, str], ...] = ()
    val_list: Optional[str] = None
    classes: tuple[str, ...] = knob(("background", "object"), nonempty=True)
    void: int = knob(255, lo=0, hi=65535)
    things: tuple[str, ...] = ()
    min_area: int = knob(150, lo=1)
    background: bool = True

    def __post_init__(self):
        unknown = [c for c in self.things if c not in self.classes]
        if unknown:
            raise ConfigError("things", f"{unknown} not in classes ({', '.join(self.classes)})")


@dataclass(frozen=True)
class CocoOptions:
    """``source.coco``: a COCO-format detection dataset (COCO, LVIS, Objects365, any exporter's
    ``instances_*.json``) under ``source.root``: the train and (optional) val annotation files and
    their image folders.  Classes are the categories sorted by id (ids need not be contiguous);
    boxes come from ``bbox``, tags from the boxes; ``masks`` optionally names a folder of class-map
    PNGs ``<id>.png`` (value = class index in that order, 255 void) -- the val images need them
    to be evaluated."""
    train_json: str = "annotations/instances_train2017.json"
    train_images: str = "train2017"
    val_json: Optional[str] = "annotations/instances_val2017.json"
    val_images: Optional[str] = "val2017"
    masks: Optional[str] = None

    def __post_init__(self):
        if (self.val_json is None) != (self.val_images is None):
            raise ConfigError("val_json", "val_json and val_images go together (both null: no val split)")


@dataclass(frozen=True)
class SourceConfig:
    """``source``: which dataset reader builds the index, from where."""
    kind: Literal["synthetic", "voc2012", "siftflow", "boxes", "camvid", "classmaps", "coco"] = "synthetic"
    root: str = "data/raw/synthetic"
    boxes: str = "auto"
    on_error: OnError = "fail"
    workers: int = knob(2, lo=1)
    voc2012: Voc2012Options = knob(factory=Voc2012Options)
    boxes_source: BoxesSourceOptions = knob(factory=BoxesSourceOptions)
    camvid: CamvidOptions = knob(factory=CamvidOptions)
    classmaps: ClassmapsOptions = knob(factory=ClassmapsOptions)
    coco: CocoOptions = knob(factory=CocoOptions)


@dataclass(frozen=True)
class SplitCounts:
    pixel: int = knob(lo=0)
    box: int = knob(lo=0)
    image: int = knob(lo=0)


@dataclass(frozen=True)
class SplitConfig:
    """``split``: training images -> pixel / box / image subsets."""
    ratio: tuple[float, float, float] = knob((1, 5, 10), lo=0)
    counts: Optional[SplitCounts] = None
    seed: int = 0

    def __post_init__(self):
        if self.counts is None and sum(self.ratio) <= 0:
            raise ConfigError("ratio", f"must not be all zero, got {list(self.ratio)}")


@dataclass(frozen=True)
class UcmConfig:
    """``ucm``: one ultrametric contour map per training image."""
    method: Literal["mixseg", "higra", "external"] = "mixseg"
    scales: tuple[float, ...] = knob((1.0, 2.0, 4.0), lo=0, lo_open=True, nonempty=True)
    external_dir: Optional[str] = None
    shard_size: int = knob(200, lo=1)
    workers: int = knob(2, lo=1)
    on_error: OnError = "fail"

    def __post_init__(self):
        if self.method == "external" and not self.external_dir:
            raise ConfigError("external_dir", "must name a folder of ucm2 files for method: external")


@dataclass(frozen=True)
class GrabcutConfig:
    iterations: int = knob(5, lo=1)
    context: Optional[float] = knob(0.5, lo=0, lo_open=True)


def _check_thresholds(key: str, t) -> None:
    if not t or any(b <= a for a, b in zip(t, t[1:])) or t[0] <= 0 or t[-1] > 1:
        raise ConfigError(key, f"must increase within (0, 1], got {list(t)}")


@dataclass(frozen=True)
class BoxStrategy:
    """One box strategy with every knob it uses resolved (suffixes applied).

    Built by :meth:`LabelsConfig.box_strategy`; read by :mod:`pipeline.labels.strategies`.
    """
    name: str
    base: str
    rule: str
    thresholds: tuple[float, ...]
    alpha: float
    margin: float
    span: float
    band: Optional[float]
    clear: float
    prior: float
    prior_band: float
    floor: Optional[float]
    small_box: float
    low_alpha: float
    low_ratio: float
    low_span: float
    low_max: float
    seed: int
    grabcut: GrabcutConfig
    external_dir: Optional[str]
    external_format: str

    @property
    def code(self) -> int:
        """The ``strategy`` code stored per box in the label shards."""
        return STRATEGIES.index(self.base)

    @property
    def needs(self) -> str | None:
        """What it reads beside the boxes: ``"ucm"``, ``"image"``, ``"external"`` or None."""
        return {"grabcut": "image", "external": "external"}.get(
            self.base, "ucm" if self.base in UCM_STRATEGIES else None)


def parse_strategy(name: str) -> tuple[str, dict]:
    """Split a strategy name into its base and its suffix overrides.

    ``ucm``, ``raw_box``, ``grabcut``, ``hard``, ``external`` are the strategies; a
    ucm-based one (``ucm``, ``hard``) may carry suffixes, each after ``_``: ``t<value>``
    (repeatable) replaces ``thresholds``, ``a<value>`` replaces ``alpha`` and a rule name
    (``paper``, ``enclosed``) replaces ``rule``.  ``ucm_t0.5`` is the single-threshold
    variant of the paper's Fig. 8; ``ucm_paper_a0.3`` the paper's method whatever the
    labels section says.

    Returns ``(base, overrides)`` with keys ``thresholds``, ``alpha`` and/or ``rule``;
    raises :class:`ValueError` for an unknown base or suffix.
    """
    name = str(name)
    base = max((s for s in STRATEGIES if name == s or name.startswith(s + "_")), key=len, default=None)
    if base is None:
        raise ValueError(f"unknown box strategy {name!r}; expected one of {', '.join(STRATEGIES)} "
                         "(ucm and hard take suffixes such as _t0.5 or _paper)")
    over: dict = {}
    rest = name[len(base) + 1:]
    for token in rest.split("_") if rest else []:
        if base not in UCM_STRATEGIES:
            raise ValueError(f"box strategy {name!r}: only {', '.join(UCM_STRATEGIES)} take suffixes")
        if token in RULES:
            over["rule"] = token
        elif token[:1] in ("t", "a"):
            try:
                value = float(token[1:])
            except ValueError:
                raise ValueError(f"box strategy {name!r}: bad suffix {token!r}") from None
            if token[0] == "t":
                over["thresholds"] = over.get("thresholds", ()) + (value,)
            else:
                over["alpha"] = value
        else:
            raise ValueError(f"box strategy {name!r}: unknown suffix {token!r} (t<threshold>, a<alpha> or one "
                             f"of {', '.join(RULES)})")
    return base, over


@dataclass(frozen=True)
class LabelsConfig:
    """``labels``: each training image's target; box images through ``strategy``."""
    strategy: str = "ucm"
    rule: Literal["enclosed", "paper"] = "enclosed"
    margin: float = knob(0.1, lo=0, hi=1)
    span: float = knob(0.82, lo=0, hi=1)
    band: Optional[float] = knob(0.75, lo=0, hi=1)
    clear: float = knob(0.235, lo=0, hi=1)
    prior: float = knob(0.35, lo=0, hi=2)
    prior_band: float = knob(0.05, lo=0, hi=1)
    floor: Optional[float] = knob(0.5, lo=0, hi=1)
    small_box: float = knob(1500.0, lo=0)
    low_alpha: float = knob(0.25, lo=0, hi=1)
    low_ratio: float = knob(0.7, lo=0, hi=1)
    low_span: float = knob(0.9, lo=0, hi=1)
    low_max: float = knob(12000.0, lo=0)
    thresholds: tuple[float, ...] = knob(PAPER_THRESHOLDS, nonempty=True)
    alpha: float = knob(0.5, lo=0, hi=1, lo_open=True)
    seed: int = 0
    grabcut: GrabcutConfig = knob(factory=GrabcutConfig)
    external_dir: Optional[str] = None
    external_format: Literal["class", "instance"] = "class"
    on_error: OnError = "fail"
    shard_size: int = knob(200, lo=1)
    workers: int = knob(2, lo=1)
    #: ``strategy`` resolved (suffixes applied): what the labels stage runs.
    box: BoxStrategy = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        _check_thresholds("thresholds", self.thresholds)
        object.__setattr__(self, "box", self.box_strategy(self.strategy, "strategy"))

    def box_strategy(self, name: str, key: str = "strategy") -> BoxStrategy:
        """The strategy ``name`` (suffixes allowed) with this section's knobs as defaults;
        :class:`ConfigError` naming ``key`` if it is unknown or its suffixes are bad."""
        try:
            base, over = parse_strategy(name)
        except ValueError as e:
            raise ConfigError(key, str(e)) from None
        s = BoxStrategy(name=str(name), base=base, rule=over.get("rule", self.rule),
                        thresholds=tuple(over.get("thresholds", self.thresholds)),
                        alpha=over.get("alpha", self.alpha), margin=self.margin, span=self.span, band=self.band,
                        clear=self.clear, prior=self.prior, prior_band=self.prior_band, floor=self.floor,
                        small_box=self.small_box, low_alpha=self.low_alpha, low_ratio=self.low_ratio,
                        low_span=self.low_span, low_max=self.low_max, seed=self.seed, grabcut=self.grabcut,
                        external_dir=self.external_dir, external_format=self.external_format)
        _check_thresholds(key, s.thresholds)
        if not 0 < s.alpha <= 1:
            raise ConfigError(key, f"box strategy {name!r}: alpha must be in (0, 1], got {s.alpha}")
        return s


@dataclass(frozen=True)
class QualityConfig:
    """``quality``: the box strategies scored against the true masks."""
    strategies: tuple[str, ...] = knob(("ucm", "raw_box", "hard", "ucm_t0.25", "ucm_t0.5", "ucm_t0.75",
                                        "ucm_paper_a0.3"), nonempty=True)


@dataclass(frozen=True)
class TrainConfig:
    """``train``: the network and its schedule, shared by every variant.

    ``mode: paper`` is the paper's exact setting: batch 1 on the whole image, each batch
    from one subset, Eq. 3 summed (``reduction``), and -- unless set -- lr 1e-4, a
    constant schedule and no warm-up.
    """
    variants: tuple[Literal["p", "p+i", "p+b", "p+b+i", "ub"], ...] = knob(VARIANTS, nonempty=True)
    arch: Literal["small", "fcn32s", "fcn16s", "fcn8s", "deeplab_largefov", "deeplab_aspp_resnet50",
                  "deeplab_aspp_resnet101", "efficientnet_lite0", "efficientnet_lite1",
                  "efficientnet_lite2"] = "small"
    pretrained: Optional[str] = None
    mode: Literal["practical", "paper"] = "practical"
    sampling: Literal["mixed", "subset"] = "mixed"
    pixel_share: float = knob(0.0, lo=0, hi=1, hi_open=True)
    batch_size: int = knob(8, lo=1)
    crop: Optional[tuple[int, int]] = knob((96, 128), lo=1)
    scale: tuple[float, float] = knob((0.75, 1.25), lo=0, lo_open=True)
    flip: bool = True
    lr: float = knob(0.1, lo=0, lo_open=True)
    momentum: float = knob(0.9, lo=0, hi=1)
    weight_decay: float = knob(0.0005, lo=0)
    schedule: Literal["poly", "step", "constant"] = "poly"
    warmup: int = knob(100, lo=0)
    epochs: float = knob(24, lo=0, lo_open=True)
    equal_iterations: bool = False
    checkpoint_every: int = knob(100, lo=1)
    log_every: int = knob(10, lo=1)
    seed: int = 0
    workers: int = knob(0, lo=0)
    threads: int = knob(2, lo=0)
    cache_mb: int = knob(1024, lo=0)
    amp: bool = True

    @classmethod
    def resolve(cls, data: dict) -> dict:
        """Apply ``mode: paper`` before the values are checked."""
        if data.get("mode") == "paper":
            data.update(batch_size=1, crop=None, sampling="subset")
            data.setdefault("lr", 1e-4)
            data.setdefault("schedule", "constant")
            data.setdefault("warmup", 0)
        return data

    def __post_init__(self):
        if len(set(self.variants)) != len(self.variants):
            raise ConfigError("variants", f"lists a variant twice: {list(self.variants)}")
        if self.scale[0] > self.scale[1]:
            raise ConfigError("scale", f"must be [min, max], got {list(self.scale)}")
        if self.pixel_share and self.sampling != "mixed":
            raise ConfigError("pixel_share", f"needs sampling: mixed (each batch from one subset cannot "
                                             f"hold a share of another), not {self.sampling}")

    @property
    def reduction(self) -> str:
        """How the loss is reduced: ``paper`` (Eq. 3 sums) or ``mean``."""
        return "paper" if self.mode == "paper" else "mean"


@dataclass(frozen=True)
class Config:
    """All of ``params.yaml``."""
    synthetic: SyntheticConfig = knob(factory=SyntheticConfig)
    source: SourceConfig = knob(factory=SourceConfig)
    split: SplitConfig = knob(factory=SplitConfig)
    ucm: UcmConfig = knob(factory=UcmConfig)
    labels: LabelsConfig = knob(factory=LabelsConfig)
    quality: QualityConfig = knob(factory=QualityConfig)
    train: TrainConfig = knob(factory=TrainConfig)

    def __post_init__(self):
        root, outs = PurePosixPath(self.source.root), [PurePosixPath(o) for o in self.synthetic.out]
        if self.source.kind == "synthetic" and not any(root.is_relative_to(o) for o in outs):
            raise ConfigError("synthetic.out", f"must list source.root ({self.source.root}) when source.kind is "
                              f"synthetic: dvc.yaml generates the set into each folder of synthetic.out")
        if self.source.kind != "synthetic" and outs:
            raise ConfigError("synthetic.out", f"must be [] when source.kind is {self.source.kind}: dvc.yaml "
                              f"would generate a synthetic set that nothing reads")
        for i, name in enumerate(self.quality.strategies):
            self.labels.box_strategy(name, f"quality.strategies[{i}]")


def load_config(path=PARAMS_FILE) -> Config:
    """Read and check ``params.yaml``; :class:`InputError` naming the file and key if it is bad."""
    path = Path(path)
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise InputError(path, "params file not found") from None
    except yaml.YAMLError as e:
        raise InputError(path, f"not valid YAML ({' '.join(str(e).split())})") from None
    return config_from_dict(doc, path)


def config_from_dict(doc, path=PARAMS_FILE) -> Config:
    """A :class:`Config` from the parsed YAML ``doc``; errors name ``path``."""
    try:
        return build(Config, doc)
    except ConfigError as e:
        raise InputError(path, f"{e.key}: {e.reason}" if e.key else e.reason) from None
