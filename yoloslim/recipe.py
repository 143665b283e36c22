"""Recipes: a YAML file of ordered stages, validated against the stage types plugins declare.

A recipe looks like::

    name: prune-distill          # optional, names the run directory
    train:                       # optional Ultralytics train arguments for every training stage
      imgsz: 256
      batch: 16
    stages:
      - type: finetune           # a stage type declared by a loaded plugin
        epochs: 3                # common key of stages whose type trains
        train: {lr0: 0.002}      # per-stage Ultralytics train arguments
      - type: export
        format: onnx             # an option declared by the stage type

Validation happens before any work: an unknown stage type, an unknown key, or a value of the wrong
type raises :class:`yoloslim.errors.RecipeError` naming the file, the stage and the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yoloslim.errors import RecipeError

# Keys every stage may have; ``epochs``/``train`` only where the stage type trains.
_COMMON_KEYS = {"type", "name"}
_TRAIN_KEYS = {"epochs", "train"}
_TOP_KEYS = {"name", "train", "stages"}


@dataclass(frozen=True)
class Option:
    """One option of a stage type.

    Attributes:
        type: Python type (or tuple of types) the YAML value must have; ``float`` also accepts ints.
        default: Value used when the recipe omits the key; ``REQUIRED`` makes the key mandatory.
        help: One line shown by ``yoloslim plugins``.
        choices: Allowed values, if restricted.
    """

    type: type | tuple[type, ...]
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None


REQUIRED = object()


@dataclass(frozen=True)
class StageType:
    """A stage a plugin handles, as returned by ``yoloslim_stage_types``.

    Attributes:
        name: Stage type used as ``type:`` in recipes.
        options: Option name to :class:`Option`.
        trains: Whether the core fine-tunes with SlimTrainer after the transform.
        default_epochs: Fine-tuning epochs when the recipe gives none (only if ``trains``).
        produces: ``"model"`` (a checkpoint) or ``"artifact"`` (a file from ``yoloslim_build_artifact``).
        help: One line describing the stage.
        epochs_flag: Name of the epochs flag of the stage's own CLI subcommand (e.g. ``finetune-epochs``).
        check: Optional validator ``check(options, epochs)`` called with the stage's options (defaults filled
            in) and its fine-tuning epochs while the recipe is validated, before any work starts; it raises
            ``ValueError`` or ``RecipeError`` naming the conflict and the fix (e.g. two options that exclude
            each other).
    """

    name: str
    options: dict[str, Option] = field(default_factory=dict)
    trains: bool = False
    default_epochs: int = 0
    produces: str = "model"
    help: str = ""
    epochs_flag: str = "epochs"
    check: Callable[[dict[str, Any], int], None] | None = None


@dataclass
class Stage:
    """One validated stage of a recipe.

    Attributes:
        index: 0-based position in the recipe.
        type: Stage type name.
        name: Display name (defaults to the type).
        options: Declared options with defaults filled in.
        epochs: Fine-tuning epochs (0 for stages that do not train).
        train: Ultralytics train arguments for this stage (recipe-level merged with stage-level).
        produces: ``"model"`` or ``"artifact"``.
    """

    index: int
    type: str
    name: str
    options: dict[str, Any]
    epochs: int = 0
    train: dict[str, Any] = field(default_factory=dict)
    produces: str = "model"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable form (used to rebuild the stage inside DDP ranks)."""
        return {
            "index": self.index,
            "type": self.type,
            "name": self.name,
            "options": self.options,
            "epochs": self.epochs,
            "train": self.train,
            "produces": self.produces,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stage:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


@dataclass
class Recipe:
    """A validated recipe."""

    path: Path | None
    name: str
    stages: list[Stage]
    train: dict[str, Any] = field(default_factory=dict)


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


def _check_value(value: Any, opt: Option) -> Any:
    """Return ``value`` converted to the option's type, or raise ValueError with the reason."""
    types = opt.type if isinstance(opt.type, tuple) else (opt.type,)
    if isinstance(value, bool) and bool not in types:
        raise ValueError(f"expected {_type_name(opt.type)}, got bool {value!r}")
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, types):
        raise ValueError(f"expected {_type_name(opt.type)}, got {type(value).__name__} {value!r}")
    if opt.choices is not None and value not in opt.choices:
        raise ValueError(f"expected one of {list(opt.choices)}, got {value!r}")
    return value


_RESERVED_TRAIN_KEYS = {"model", "data", "epochs", "device", "project", "name", "mode", "task", "resume"}
_RESERVED_HINT = {
    "epochs": "use the stage's 'epochs' key",
    "data": "pass --data on the command line",
    "device": "pass --device on the command line",
    "imgsz": "one image size serves training, export and measurement: set it in the top-level 'train' or --imgsz",
}


def _check_train_args(args: Any, where: str, stage_level: bool = False) -> dict[str, Any]:
    """Validate Ultralytics train arguments against Ultralytics' own configuration keys."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    if args is None:
        return {}
    if not isinstance(args, dict):
        raise RecipeError(f"{where}: 'train' must be a mapping of Ultralytics train arguments, got {args!r}")
    for key in args:
        if key not in DEFAULT_CFG_DICT:
            raise RecipeError(
                f"{where}: unknown Ultralytics train argument 'train.{key}'; "
                "use a key from 'yolo cfg' (e.g. lr0, batch, imgsz, optimizer)"
            )
        if key in _RESERVED_TRAIN_KEYS or (stage_level and key == "imgsz"):
            raise RecipeError(f"{where}: 'train.{key}' is set by yoloslim; {_RESERVED_HINT.get(key, '')}".rstrip("; "))
    return dict(args)


def parse_recipe(raw: Any, stage_types: dict[str, StageType], path: Path | None = None,
                 failed_plugins: dict[str, str] | None = None) -> Recipe:
    """Validate an already-loaded recipe mapping.

    Args:
        raw: The mapping read from YAML.
        stage_types: Stage types declared by the loaded plugins, by name.
        path: File the recipe came from (named in errors).
        failed_plugins: Plugins that failed to load (name -> error), mentioned when a stage is unknown.

    Returns:
        The validated :class:`Recipe`.

    Raises:
        RecipeError: On any unknown stage or key, or a wrong type, naming file, stage and key.
    """
    src = str(path) if path else "<recipe>"
    if not isinstance(raw, dict):
        raise RecipeError(f"{src}: a recipe must be a mapping with a 'stages' list, got {type(raw).__name__}")
    for key in raw:
        if key not in _TOP_KEYS:
            raise RecipeError(f"{src}: unknown top-level key '{key}'; allowed: {sorted(_TOP_KEYS)}")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise RecipeError(f"{src}: 'stages' must be a non-empty list of stages, each with a 'type'")
    name = raw.get("name") or (path.stem if path else "recipe")
    if not isinstance(name, str):
        raise RecipeError(f"{src}: 'name' must be a string, got {name!r}")
    recipe_train = _check_train_args(raw.get("train"), f"{src}")

    stages = []
    for i, s in enumerate(stages_raw):
        if not isinstance(s, dict) or "type" not in s:
            raise RecipeError(f"{src}: stage {i + 1} must be a mapping with a 'type' key, got {s!r}")
        stype = s["type"]
        where = f"{src}: stage {i + 1} ({stype})"
        if stype not in stage_types:
            hint = f"known stage types: {sorted(stage_types) or 'none'}"
            if failed_plugins:
                hint += "; plugins that failed to load: " + ", ".join(f"{k} ({v})" for k, v in failed_plugins.items())
            raise RecipeError(f"{where}: unknown stage type '{stype}'; {hint}")
        st = stage_types[stype]
        allowed = _COMMON_KEYS | set(st.options) | (_TRAIN_KEYS if st.trains else set())
        for key in s:
            if key not in allowed:
                raise RecipeError(f"{where}: unknown key '{key}'; allowed keys: {sorted(allowed)}")
        options = {}
        for key, opt in st.options.items():
            if key in s:
                try:
                    options[key] = _check_value(s[key], opt)
                except ValueError as e:
                    raise RecipeError(f"{where}: key '{key}': {e}") from None
            elif opt.default is REQUIRED:
                raise RecipeError(f"{where}: missing required key '{key}' ({opt.help or _type_name(opt.type)})")
            else:
                options[key] = opt.default
        epochs = 0
        if st.trains:
            epochs = s.get("epochs", st.default_epochs)
            if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
                raise RecipeError(f"{where}: key 'epochs': expected a non-negative int, got {epochs!r}")
        if st.check is not None:
            try:
                st.check(options, epochs)
            except (ValueError, RecipeError) as e:
                raise RecipeError(f"{where}: {e}") from None
        train = {**recipe_train, **_check_train_args(s.get("train"), where, stage_level=True)}
        sname = s.get("name", stype)
        if not isinstance(sname, str):
            raise RecipeError(f"{where}: key 'name': expected str, got {sname!r}")
        stages.append(Stage(i, stype, sname, options, epochs, train, st.produces))
    return Recipe(path=path, name=name, stages=stages, train=recipe_train)


def load_recipe(path: str | Path, stage_types: dict[str, StageType],
                failed_plugins: dict[str, str] | None = None) -> Recipe:
    """Read and validate a recipe YAML file.

    Raises:
        RecipeError: If the file is missing, is not valid YAML, or fails validation.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file '{path}' not found; pass an existing YAML file (see recipes/)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the syntax") from None
    return parse_recipe(raw, stage_types, path, failed_plugins)
