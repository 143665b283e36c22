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

Validation happens before any work: an unknown stage type, an unknown key, a value of the wrong
type, a stage name that is not a plain name (letters, digits, ``-``, ``_``) or used twice, or YAML
aliases raise :class:`yoloslim.errors.RecipeError` naming the file, the stage and the key.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yoloslim.errors import PluginError, RecipeError, YoloslimError

# Keys every stage may have; ``epochs``/``train`` only where the stage type trains.
_COMMON_KEYS = {"type", "name"}
_TRAIN_KEYS = {"epochs", "train"}
_TOP_KEYS = {"name", "train", "stages"}
# Recipe and stage names become folder names (runs/slim/<name>, NN_<name>) and report rows.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RESERVED_STAGE_NAMES = {"original"}  # the report's row of the input model
_MAX_VALUE_CHARS = 200

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def _cut(text: str, limit: int = _MAX_VALUE_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to a length that fits in a one-line error message (at most 200 characters)."""
    return _cut(_REPR.repr(value))


class _NoAliasSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``), so a few bytes cannot expand into gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "found an alias", event.start_mark)
        return super().compose_node(parent, index)


def safe_yaml_load(text: str, source: str, error: type[YoloslimError] = RecipeError) -> Any:
    """Parse YAML ``text`` safely: no Python tags, no aliases, bounded nesting.

    Args:
        text: The YAML document.
        source: What the text came from (a file name), named in errors.
        error: Exception type raised on bad input (default :class:`RecipeError`).

    Returns:
        The parsed document.

    Raises:
        YoloslimError: ``error`` if the text is not valid YAML, uses aliases (``*name``), or nests too deeply.
    """
    try:
        return yaml.load(text, Loader=_NoAliasSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        if isinstance(e, yaml.composer.ComposerError) and e.problem == "found an alias":
            raise error(f"{source}: uses YAML aliases (&/*), which yoloslim does not accept; "
                        "write the values out") from None
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
        first = (f"line {mark.line + 1}: {problem}" if mark and problem
                 else (str(e).splitlines() or [type(e).__name__])[0])
        raise error(f"{source}: not valid YAML ({_cut(first)}); fix the syntax") from None
    except RecursionError:
        raise error(f"{source}: YAML nested too deeply; write a flat document") from None


def _check_plain_name(name: Any, what: str, fix: str) -> str:
    """Return ``name`` if it is a plain name usable as a folder name, else raise RecipeError naming ``what``."""
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name):
        got = short_repr(name) if isinstance(name, str) else f"{type(name).__name__} {short_repr(name)}"
        raise RecipeError(f"{what} must be a plain name of 1-64 letters, digits, '-' or '_', got {got}; {fix}")
    return name


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
        raise ValueError(f"expected {_type_name(opt.type)}, got bool {short_repr(value)}")
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, types):
        raise ValueError(f"expected {_type_name(opt.type)}, got {type(value).__name__} {short_repr(value)}")
    if opt.choices is not None and value not in opt.choices:
        raise ValueError(f"expected one of {_cut(repr(list(opt.choices)))}, got {short_repr(value)}")
    return value


_RESERVED_TRAIN_KEYS = {"model", "data", "epochs", "device", "project", "name", "mode", "task", "resume"}
_RESERVED_HINT = {
    "epochs": "use the stage's 'epochs' key",
    "data": "pass --data on the command line",
    "device": "pass --device on the command line",
    "imgsz": "one image size serves training, export and measurement: set it in the top-level 'train' or --imgsz",
}


def _expected_train_value(key: str) -> str | None:
    """What Ultralytics accepts for ``key``, in words, from its own key sets (``None`` for its special keys)."""
    from ultralytics import cfg

    int_min = getattr(cfg, "CFG_INT_MIN", {})
    if key == "fraction":
        return "a ratio in (0, 1] or a count > 1"
    if key in cfg.CFG_FLOAT_KEYS:
        return "a number (int or float)"
    if key in cfg.CFG_FRACTION_KEYS:
        return "a number between 0.0 and 1.0"
    if key in cfg.CFG_INT_KEYS:
        return "an int" + (f" >= {int_min[key]}" if key in int_min else "")
    if key in cfg.CFG_BOOL_KEYS:
        return "true or false"
    if key in getattr(cfg, "CFG_STR_KEYS", ()):
        return "a string"
    return None


def _check_train_args(args: Any, where: str, stage_level: bool = False) -> dict[str, Any]:
    """Validate Ultralytics train arguments: keys against its configuration, values with its ``check_cfg``.

    Returns:
        The arguments, converted as Ultralytics converts them (e.g. ``fraction: 1`` becomes ``1.0``).
    """
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    if args is None:
        return {}
    if not isinstance(args, dict):
        raise RecipeError(f"{where}: 'train' must be a mapping of Ultralytics train arguments, "
                          f"got {type(args).__name__} {short_repr(args)}")
    out = {}
    for key, value in args.items():
        if not isinstance(key, str) or key not in DEFAULT_CFG_DICT:
            raise RecipeError(
                f"{where}: unknown Ultralytics train argument 'train.{_cut(str(key))}'; "
                "use a key from 'yolo cfg' (e.g. lr0, batch, imgsz, optimizer)"
            )
        if key in _RESERVED_TRAIN_KEYS or (stage_level and key == "imgsz"):
            raise RecipeError(f"{where}: 'train.{key}' is set by yoloslim; {_RESERVED_HINT.get(key, '')}".rstrip("; "))
        checked = {key: value}
        try:
            check_cfg(checked, hard=True)  # Ultralytics' own rules, so a bad value fails here, not after training
        except (TypeError, ValueError) as e:
            got = f"got {type(value).__name__} {short_repr(value)}"
            expected = _expected_train_value(key)
            if expected is None:  # scale, compile, amp, quantize: Ultralytics' own words say what it accepts
                rule = re.search(r"\b(Valid|Use|must)\b.*", str(e))  # the part after the (maybe huge) value
                problem = f"{got}, which Ultralytics refuses ({_cut(rule.group(0) if rule else str(e))})"
            else:
                problem = f"expected {expected}, {got}"
            raise RecipeError(f"{where}: 'train.{key}': {problem}; fix the value in the recipe") from None
        out[key] = checked[key]
    return out


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
        RecipeError: On any unknown stage or key, a wrong type, or a name that is not a plain name or is used twice,
            naming file, stage and key.
        PluginError: If a stage type's ``check`` fails with anything but ``ValueError``/``RecipeError`` (a plugin bug).
    """
    src = str(path) if path else "<recipe>"
    if not isinstance(raw, dict):
        raise RecipeError(f"{src}: a recipe must be a mapping with a 'stages' list, got {type(raw).__name__}")
    for key in raw:
        if key not in _TOP_KEYS:
            raise RecipeError(f"{src}: unknown top-level key {short_repr(key)}; allowed: {sorted(_TOP_KEYS)}")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise RecipeError(f"{src}: 'stages' must be a non-empty list of stages, each with a 'type'")
    if raw.get("name") is not None:
        name = _check_plain_name(raw["name"], f"{src}: 'name'", "it names the run directory runs/slim/<name>")
    else:  # the file's stem, made a plain name
        name = (re.sub(r"[^A-Za-z0-9_-]", "_", path.stem)[:64] if path else "") or "recipe"
    recipe_train = _check_train_args(raw.get("train"), f"{src}")

    stages: list[Stage] = []
    seen: dict[str, int] = {}
    for i, s in enumerate(stages_raw):
        if not isinstance(s, dict) or "type" not in s:
            raise RecipeError(f"{src}: stage {i + 1} must be a mapping with a 'type' key, got {short_repr(s)}")
        stype = s["type"]
        if not isinstance(stype, str):
            raise RecipeError(f"{src}: stage {i + 1}: key 'type': expected the name of a stage type, "
                              f"got {type(stype).__name__} {short_repr(stype)}; "
                              f"known stage types: {sorted(stage_types)}")
        where = f"{src}: stage {i + 1} ({_cut(stype)})"
        if stype not in stage_types:
            hint = f"known stage types: {sorted(stage_types) or 'none'}"
            if failed_plugins:
                failed = ", ".join(f"{k} ({_cut(v)})" for k, v in failed_plugins.items())
                hint += f"; plugins that failed to load: {failed}"
            raise RecipeError(f"{where}: unknown stage type {short_repr(stype)}; {hint}")
        st = stage_types[stype]
        allowed = _COMMON_KEYS | set(st.options) | (_TRAIN_KEYS if st.trains else set())
        for key in s:
            if key not in allowed:
                raise RecipeError(f"{where}: unknown key {short_repr(key)}; allowed keys: {sorted(allowed)}")
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
                raise RecipeError(f"{where}: key 'epochs': expected a non-negative int, got {short_repr(epochs)}")
        if st.check is not None:
            _run_check(st, options, epochs, where)
        train = {**recipe_train, **_check_train_args(s.get("train"), where, stage_level=True)}
        if "name" in s:
            sname = _check_plain_name(s["name"], f"{where}: key 'name'", "it names the stage's folder and report row")
        else:
            sname = _check_plain_name(stype, f"{where}: the stage type, used as the stage's name,",
                                      "give the stage a 'name:'")
        if sname in _RESERVED_STAGE_NAMES:
            raise RecipeError(f"{where}: stage name '{sname}' is the report's row of the input model; "
                              "give the stage another 'name:'")
        if sname in seen:
            raise RecipeError(f"{where}: stage name '{sname}' is already used by stage {seen[sname] + 1}; "
                              "give each stage a different 'name:' so the report rows can be told apart")
        seen[sname] = i
        stages.append(Stage(i, stype, sname, options, epochs, train, st.produces))
    return Recipe(path=path, name=name, stages=stages, train=recipe_train)


def _run_check(st: StageType, options: dict[str, Any], epochs: int, where: str) -> None:
    """Run the stage type's ``check``: its ValueError is bad input, anything else a bug of the plugin."""
    assert st.check is not None
    try:
        st.check(options, epochs)
    except (ValueError, RecipeError) as e:  # the plugin's own words, which may quote a user value
        raise RecipeError(f"{where}: {_cut(str(e), 600)}") from None
    except YoloslimError as e:  # a check that found a missing teacher (ModelError), a plugin bug (PluginError), ...
        raise type(e)(f"{where}: {e}") from None
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as e:  # noqa: BLE001 - a plugin's bug, sys.exit included, becomes one line
        raise PluginError(
            f"{where}: stage type '{st.name}': its check raised {type(e).__name__}: {_cut(str(e), 300)}; "
            "fix or disable the plugin that declares it"
        ) from e


def load_recipe(path: str | Path, stage_types: dict[str, StageType],
                failed_plugins: dict[str, str] | None = None) -> Recipe:
    """Read and validate a recipe YAML file.

    Raises:
        RecipeError: If the file is missing or unreadable, is not valid YAML, uses YAML aliases, or fails validation.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file '{path}' not found; pass an existing YAML file (see recipes/)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a text file (not UTF-8); pass a recipe YAML file") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot read the recipe ({e.strerror}); check the file's permissions") from None
    return parse_recipe(safe_yaml_load(text, str(path)), stage_types, path, failed_plugins)
