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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yoloslim.errors import PluginError, RecipeError, YoloslimError, short_repr
from yoloslim.errors import cut as _cut
from yoloslim.options import NoOptions, OptionSpec, build_options, option_specs, options_dict

# Keys every stage may have; ``epochs``/``train`` only where the stage type trains.
_COMMON_KEYS = {"type", "name"}
_TRAIN_KEYS = {"epochs", "train"}
_TOP_KEYS = {"name", "train", "stages"}
# Recipe and stage names become folder names (runs/slim/<name>, NN_<name>) and report rows.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RESERVED_STAGE_NAMES = {"original"}  # the report's row of the input model


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
            raise error(
                f"{source}: uses YAML aliases (&/*), which yoloslim does not accept; write the values out"
            ) from None
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
        first = (
            f"line {mark.line + 1}: {problem}" if mark and problem else (str(e).splitlines() or [type(e).__name__])[0]
        )
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
class StageType:
    """A stage a plugin handles, as returned by ``yoloslim_stage_types``.

    Attributes:
        name: Stage type used as ``type:`` in recipes and as the name of its CLI subcommand.
        options: The options dataclass (fields declared with :func:`yoloslim.option`, see :mod:`yoloslim.options`);
            ``stage.options`` is an instance of it, checked. Its optional ``check(self, epochs)`` method holds the
            rules that combine options; it runs while the recipe is validated, before any work.
        accepts_training: Whether the stage may fine-tune: it accepts the ``epochs`` and ``train`` keys (and
            ``key=value`` training arguments on its subcommand). A ``"model"`` stage with ``epochs`` > 0 is
            fine-tuned by the core after its transform; an ``"artifact"`` stage that trains (e.g. quantization-aware
            training) calls :meth:`yoloslim.SlimContext.finetune` itself.
        default_epochs: Fine-tuning epochs when the recipe gives none (only if ``accepts_training``).
        train_defaults: Ultralytics training arguments this stage type trains with unless the recipe or the command
            line sets them (e.g. ``{"lr0": 1e-5, "warmup_epochs": 0}`` for quantization-aware training). They override
            what the stage inherits from the checkpoint's own training (batch, optimizer, augmentation).
        produces: ``"model"`` (a checkpoint) or ``"artifact"`` (a file from ``yoloslim_build_artifact``).
        schedule: Where the stage's default learning rate sits on the checkpoint's own schedule
            (:func:`yoloslim.pipeline.resumed_schedule`): ``"resume"`` continues where it ended (its ``lr0 x lrf``),
            for stages that keep the model close to what it learned (fine-tuning, distillation, QAT);
            ``"restart"`` starts at its ``lr0`` again, for stages that change the model so much it must relearn
            (pruning). Either way without warm-up, and only while the recipe and the command line set neither
            ``lr0`` nor ``optimizer``.
        help: One line describing the stage.
        epochs_flag: Name of the epochs flag of the stage's own CLI subcommand (e.g. ``finetune-epochs``).
        epochs_help: Help of that flag (what the epochs are for in this stage).
        plugin: The plugin that declared the stage type (set by the plugin manager; named when its ``check`` fails).
    """

    name: str
    options: type = NoOptions
    accepts_training: bool = False
    default_epochs: int = 0
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    produces: str = "model"
    schedule: str = "resume"
    help: str = ""
    epochs_flag: str = "epochs"
    epochs_help: str = "fine-tuning epochs"
    plugin: str | None = None

    @property
    def specs(self) -> dict[str, OptionSpec]:
        """The declared options, by name (see :func:`yoloslim.options.option_specs`)."""
        return option_specs(self.options)

    def parse(self, raw: Mapping[str, Any], epochs: int = 0, where: str = "") -> Any:
        """Check ``raw`` option values against the declaration and return the options instance.

        Args:
            raw: Option name to value (missing keys take their defaults).
            epochs: The stage's fine-tuning epochs, for the options' ``check``.
            where: Prefix of error messages.

        Raises:
            RecipeError: On a bad value, a missing required key, or a conflict the options' ``check`` finds.
        """
        return build_options(self.options, raw, epochs, where, self.plugin)


@dataclass
class Stage:
    """One validated stage of a recipe.

    Attributes:
        index: 0-based position in the recipe.
        type: Stage type name.
        name: Display name (defaults to the type).
        options: The stage type's options instance, every value checked and defaults filled in.
        epochs: Fine-tuning epochs (0 for stages that do not train).
        train: Ultralytics train arguments for this stage: the stage type's ``train_defaults``, then the recipe's
            top-level ``train``, then the stage's own ``train`` (and ``key=value`` on the command line).
        produces: ``"model"`` or ``"artifact"``.
        schedule: The stage type's ``schedule`` (``"resume"`` or ``"restart"``).
    """

    index: int
    type: str
    name: str
    options: Any
    epochs: int = 0
    train: dict[str, Any] = field(default_factory=dict)
    produces: str = "model"
    schedule: str = "resume"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable form (written to reports; used to rebuild the stage inside DDP ranks)."""
        return {
            "index": self.index,
            "type": self.type,
            "name": self.name,
            "options": options_dict(self.options),
            "epochs": self.epochs,
            "train": self.train,
            "produces": self.produces,
            "schedule": self.schedule,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], stage_types: Mapping[str, StageType] | None = None) -> Stage:
        """Inverse of :meth:`to_dict`; the options are rebuilt from ``stage_types`` (default: the loaded plugins')."""
        d = dict(d)
        if isinstance(d.get("options"), Mapping):
            if stage_types is None:
                from yoloslim.plugins import get_plugin_manager

                stage_types = get_plugin_manager().stage_types()
            st = stage_types.get(d["type"])
            if st is None:
                raise PluginError(f"stage '{d['name']}': no loaded plugin declares stage type '{d['type']}'")
            d["options"] = st.parse(d["options"], d.get("epochs", 0), f"stage '{d['name']}'")
        return cls(**d)


@dataclass
class Recipe:
    """A validated recipe."""

    path: Path | None
    name: str
    stages: list[Stage]
    train: dict[str, Any] = field(default_factory=dict)


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


_CLI_HINT = {
    "epochs": "use the command's epochs flag (see --help)",
    "data": "use --data",
    "device": "use --device",
    "imgsz": "use --imgsz (one image size serves training, export and measurement)",
    "model": "pass the checkpoint as the command's first argument",
    "project": "use --run-dir",
    "name": "use --run-dir",
}


def _nearest(key: str, keys: Any) -> str:
    """`` (did you mean 'lr0'?)`` for a near miss of one of ``keys``, else ``""`` (as Ultralytics suggests)."""
    import difflib

    close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_train_args(args: Any, where: str, stage_level: bool = False, cli: bool = False) -> dict[str, Any]:
    """Validate Ultralytics train arguments: keys against its configuration, values with its ``check_cfg``.

    Args:
        args: The mapping of arguments (a recipe's ``train`` block, or ``key=value`` words of a command line).
        where: Prefix of error messages.
        stage_level: A stage's own block (``imgsz`` is the run's, not a stage's).
        cli: The arguments came from a command line: errors name them as ``key=`` with the command's flags as fixes.

    Returns:
        The arguments, converted as Ultralytics converts them (e.g. ``fraction: 1`` becomes ``1.0``).
    """
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    if args is None:
        return {}
    if not isinstance(args, dict):
        raise RecipeError(
            f"{where}: 'train' must be a mapping of Ultralytics train arguments, "
            f"got {type(args).__name__} {short_repr(args)}"
        )
    out = {}
    for key, value in args.items():
        shown = f"'{_cut(str(key))}='" if cli else f"'train.{_cut(str(key))}'"
        fix = "fix the value on the command line" if cli else "fix the value in the recipe"
        if not isinstance(key, str) or key not in DEFAULT_CFG_DICT:
            raise RecipeError(
                f"{where}: unknown Ultralytics train argument {shown}{_nearest(str(key), DEFAULT_CFG_DICT)}; "
                "use a key from 'yolo cfg' (e.g. lr0, batch, optimizer, warmup_epochs)"
            )
        if key in _RESERVED_TRAIN_KEYS or (stage_level and key == "imgsz"):
            hint = _CLI_HINT.get(key, "") if cli else _RESERVED_HINT.get(key, "")
            raise RecipeError(f"{where}: {shown} is set by yoloslim; {hint}".rstrip("; "))
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
            raise RecipeError(f"{where}: {shown}: {problem}; {fix}") from None
        out[key] = checked[key]
    return out


def parse_train_words(words: list[str], where: str) -> dict[str, Any]:
    """Ultralytics training arguments given as ``key=value`` words on a command line, checked like a recipe's.

    Values are read as Ultralytics reads them (``1e-4`` a float, ``true`` a bool, ``AdamW`` a string).

    Raises:
        RecipeError: For a word that is not ``key=value``, an unknown key (with the nearest one), a key yoloslim
            sets itself (with the flag to use), or a value Ultralytics refuses.
    """
    from ultralytics.cfg import smart_value

    args: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise RecipeError(
                f"{where}: unrecognized argument {short_repr(word)}; training arguments are "
                "key=value words (e.g. lr0=0.0005 warmup_epochs=0), flags start with --"
            )
        args[key] = smart_value(value)
    return _check_train_args(args, where, stage_level=True, cli=True)


def parse_recipe(
    raw: Any, stage_types: dict[str, StageType], path: Path | None = None, failed_plugins: dict[str, str] | None = None
) -> Recipe:
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
            raise RecipeError(
                f"{src}: stage {i + 1}: key 'type': expected the name of a stage type, "
                f"got {type(stype).__name__} {short_repr(stype)}; "
                f"known stage types: {sorted(stage_types)}"
            )
        where = f"{src}: stage {i + 1} ({_cut(stype)})"
        if stype not in stage_types:
            hint = f"known stage types: {sorted(stage_types) or 'none'}"
            if failed_plugins:
                failed = ", ".join(f"{k} ({_cut(v)})" for k, v in failed_plugins.items())
                hint += f"; plugins that failed to load: {failed}"
            raise RecipeError(f"{where}: unknown stage type {short_repr(stype)}; {hint}")
        st = stage_types[stype]
        specs = st.specs
        allowed = _COMMON_KEYS | set(specs) | (_TRAIN_KEYS if st.accepts_training else set())
        for key in s:
            if key not in allowed:
                raise RecipeError(f"{where}: unknown key {short_repr(key)}; allowed keys: {sorted(allowed)}")
        epochs = 0
        if st.accepts_training:
            epochs = s.get("epochs", st.default_epochs)
            if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
                raise RecipeError(f"{where}: key 'epochs': expected a non-negative int, got {short_repr(epochs)}")
        options = st.parse({k: v for k, v in s.items() if k in specs}, epochs, where)
        train = {
            **_stage_type_train_defaults(st),
            **recipe_train,
            **_check_train_args(s.get("train"), where, stage_level=True),
        }
        if "name" in s:
            sname = _check_plain_name(s["name"], f"{where}: key 'name'", "it names the stage's folder and report row")
        else:
            sname = _check_plain_name(
                stype, f"{where}: the stage type, used as the stage's name,", "give the stage a 'name:'"
            )
        if sname in _RESERVED_STAGE_NAMES:
            raise RecipeError(
                f"{where}: stage name '{sname}' is the report's row of the input model; give the stage another 'name:'"
            )
        if sname in seen:
            raise RecipeError(
                f"{where}: stage name '{sname}' is already used by stage {seen[sname] + 1}; "
                "give each stage a different 'name:' so the report rows can be told apart"
            )
        seen[sname] = i
        stages.append(Stage(i, stype, sname, options, epochs, train, st.produces, st.schedule))
    return Recipe(path=path, name=name, stages=stages, train=recipe_train)


def _stage_type_train_defaults(st: StageType) -> dict[str, Any]:
    """The stage type's ``train_defaults``, checked like a recipe's (a bad one is the plugin's bug)."""
    if not st.train_defaults:
        return {}
    try:
        return _check_train_args(dict(st.train_defaults), f"stage type '{st.name}': train_defaults", stage_level=True)
    except RecipeError as e:
        raise PluginError(f"{e}; fix or disable the plugin that declares it") from None


def load_recipe(
    path: str | Path, stage_types: dict[str, StageType], failed_plugins: dict[str, str] | None = None
) -> Recipe:
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
