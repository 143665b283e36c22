"""A stage type's options, declared once: a frozen dataclass whose fields are :func:`option`.

From that one declaration the core derives recipe validation (types, choices, ranges, required keys), the
generated CLI flags of the stage's subcommand and their help (defaults shown), ``yoloslim plugins --verbose``
and ``docs/stage-options.md``. A stage arrives at its plugin with ``stage.options`` already an instance of the
class, every field checked::

    from dataclasses import dataclass
    from yoloslim import option

    @dataclass(frozen=True)
    class SlimmingOptions:
        ratio: float = option(0.3, help="fraction of channels removed", ge=0.0, lt=1.0)
        sparsity: float = option(1e-4, help="L1 weight on BatchNorm gammas during training", ge=0.0)
        criterion: str = option("gamma", help="ranking of channels", choices=("gamma", "l1"))

        def check(self, epochs: int) -> None:  # optional: rules that combine options
            if self.sparsity > 0 and epochs == 0:
                raise ValueError("'sparsity' acts during training; give 'epochs' >= 1 or set sparsity 0")

The field's annotation is its type: ``int``, ``float`` (an int is accepted and converted), ``bool``, ``str``,
``list[...]``, ``tuple[...]`` (a YAML list is converted), ``dict[...]`` or a union of them; ``| None`` lets the
value be ``None``, meaning "not given, the stage decides". A field without a default (``option(help=...)``) is
required. ``check(self, epochs)``, if the class defines it, runs after every field was checked, while the recipe
is validated and before any work; it raises ``ValueError`` (or :class:`yoloslim.errors.RecipeError`) naming the
conflicting keys and the fix, and the core adds the recipe file and stage to the message. Values a stage derives
from its options (a default that depends on another option) are properties of the class, so the declaration
stays the single source.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yoloslim.errors import PluginError, RecipeError, YoloslimError, cut, short_repr

_META = "yoloslim"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of an option the recipe must give (``option()`` without a default means the same)."""


def option(
    default: Any = REQUIRED,
    *,
    help: str = "",
    choices: tuple[Any, ...] | None = None,  # noqa: A002
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """Declare one option of a stage type as a dataclass field.

    Args:
        default: Value when the recipe omits the key; omit it (or pass :data:`REQUIRED`) for a required option.
        help: One line shown by the stage's ``--help``, ``yoloslim plugins --verbose`` and the docs.
        choices: The allowed values, if restricted.
        ge, gt, le, lt: Bounds of a number (>=, >, <=, <); ``None`` values pass.

    Returns:
        A ``dataclasses.field`` carrying the declaration.
    """
    meta = {
        _META: {
            "help": help,
            "choices": tuple(choices) if choices is not None else None,
            "ge": ge,
            "gt": gt,
            "le": le,
            "lt": lt,
        }
    }
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (list, dict, set)):
        raise TypeError("an option's default must be immutable (use a tuple or a string)")
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionSpec:
    """One option as the core reads it from the declaration (see :func:`option`).

    Attributes:
        name: Recipe key (the field name); the CLI flag is ``--name-with-dashes``.
        types: Accepted value types (``float`` also takes an int; ``tuple`` also a list).
        nullable: Whether ``None`` is accepted.
        default: The default, or :data:`REQUIRED`.
        help: One line of help.
        choices: Allowed values, or None.
        bounds: ``(ge, gt, le, lt)``.
        item_type: Element type of a ``list``/``tuple`` option, when it is a plain type.
    """

    name: str
    types: tuple[type, ...]
    nullable: bool
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    bounds: tuple[float | None, float | None, float | None, float | None]
    item_type: type | None = None

    @property
    def required(self) -> bool:
        """Whether the recipe must give the key."""
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        """The accepted types in words (``float``, ``str or list``)."""
        names = [t.__name__ for t in self.types]
        return " or ".join(names) + (" or null" if self.nullable else "")

    def range_text(self) -> str:
        """The allowed range in interval notation (``[0, 1)``, ``>= 1``), or ``""``."""
        ge, gt, le, lt = self.bounds
        low = f"[{ge:g}" if ge is not None else f"({gt:g}" if gt is not None else None
        high = f"{le:g}]" if le is not None else f"{lt:g})" if lt is not None else None
        if low and high:
            return f"{low}, {high}"
        if low:
            return (">= " if ge is not None else "> ") + f"{low[1:]}"
        if high:
            return ("<= " if le is not None else "< ") + f"{high[:-1]}"
        return ""

    def default_text(self) -> str:
        """The default as the help shows it."""
        if self.required:
            return "required"
        if self.default is None:
            return "auto"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    def check(self, value: Any) -> Any:
        """Return ``value`` converted to the option's type, or raise ``ValueError`` saying what was expected."""
        if value is None:
            if self.nullable or self.default is None:
                return None
            raise ValueError(f"expected {self.type_name}, got null")
        if isinstance(value, bool) and bool not in self.types:
            raise ValueError(f"expected {self.type_name}, got bool {short_repr(value)}")
        if float in self.types and isinstance(value, int) and not isinstance(value, bool) and int not in self.types:
            value = float(value)
        if tuple in self.types and isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, self.types):
            raise ValueError(f"expected {self.type_name}, got {type(value).__name__} {short_repr(value)}")
        if self.item_type is not None and isinstance(value, (list, tuple)):
            items = [self._item(v) for v in value]
            value = type(value)(items)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {short_repr(list(self.choices))}, got {short_repr(value)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not self._in_range(value):
            raise ValueError(f"must be {self.range_text()}, got {short_repr(value)}")
        return value

    def _item(self, v: Any) -> Any:
        t = self.item_type
        if t is float and isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        if not isinstance(v, t) or (isinstance(v, bool) and t is not bool):
            raise ValueError(f"expected a list of {t.__name__}, got an item {type(v).__name__} {short_repr(v)}")
        return v

    def _in_range(self, v: float) -> bool:
        ge, gt, le, lt = self.bounds
        return (ge is None or v >= ge) and (gt is None or v > gt) and (le is None or v <= le) and (lt is None or v < lt)


_SCALARS = (bool, int, float, str)
_CONTAINERS = {list: list, tuple: tuple, dict: dict}


def _types_of(annotation: Any, where: str) -> tuple[tuple[type, ...], bool, type | None]:
    """(accepted types, nullable, item type) of a field annotation."""
    args = (
        typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else (annotation,)
    )
    accepted: list[type] = []
    nullable, item = False, None
    for a in args:
        if a is type(None):
            nullable = True
            continue
        origin = typing.get_origin(a) or a
        if origin in _SCALARS:
            accepted.append(origin)
        elif origin in _CONTAINERS:
            accepted.append(_CONTAINERS[origin])
            inner = [x for x in typing.get_args(a) if x is not Ellipsis]
            if origin in (list, tuple) and inner and all(x is inner[0] for x in inner) and inner[0] in _SCALARS:
                item = inner[0]
        else:
            raise PluginError(
                f"{where}: option type {a!r} is not supported; use bool, int, float, str, list, "
                "tuple or dict (or a union of them, '| None' for an optional value)"
            )
    return tuple(accepted), nullable, item


@functools.cache  # read once per class: recipes, commands and rebuilt stages ask again and again
def option_specs(cls: type) -> dict[str, OptionSpec]:
    """The options declared by the dataclass ``cls``, by name, in declaration order (shared: do not change it).

    Raises:
        PluginError: If ``cls`` is not a dataclass or a field's type is not one an option can have.
    """
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise PluginError(f"options of a stage type must be a dataclass, got {cls!r}")
    hints = typing.get_type_hints(cls)
    specs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        meta = f.metadata.get(_META, {})
        accepted, nullable, item = _types_of(hints[f.name], f"{cls.__name__}.{f.name}")
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        specs[f.name] = OptionSpec(
            f.name,
            accepted,
            nullable,
            default,
            meta.get("help", ""),
            meta.get("choices"),
            (meta.get("ge"), meta.get("gt"), meta.get("le"), meta.get("lt")),
            item,
        )
    return specs


@dataclass(frozen=True)
class NoOptions:
    """The options of a stage type that declares none."""


def build_options(
    cls: type, raw: Mapping[str, Any], epochs: int = 0, where: str = "", plugin: str | None = None
) -> Any:
    """Check ``raw`` (recipe keys of one stage) against ``cls``'s declaration and return an instance.

    Every given key is checked for type, choices and range; missing keys take their defaults; a missing
    required key is an error; then ``cls.check(epochs)`` runs, if defined. Keys ``raw`` holds that are not
    options are ignored (the recipe refuses unknown keys before calling this).

    Args:
        cls: The stage type's options dataclass.
        raw: The stage's keys as read from the recipe (or a command line).
        epochs: The stage's fine-tuning epochs, passed to ``check``.
        where: Prefix of error messages (file and stage); ``""`` for none.
        plugin: The plugin that declared ``cls``, named when ``check`` has a bug.

    Raises:
        RecipeError: Naming the key, what it expected and what it got, or the conflict ``check`` found.
        PluginError: If ``check`` fails with anything but ``ValueError``/``RecipeError`` (a bug of the plugin).
    """
    prefix = f"{where}: " if where else ""
    values = {}
    for name, spec in option_specs(cls).items():
        if name in raw:
            try:
                values[name] = spec.check(raw[name])
            except ValueError as e:
                raise RecipeError(f"{prefix}key '{name}': {e}") from None
        elif spec.required:
            raise RecipeError(f"{prefix}missing required key '{name}' ({spec.help or spec.type_name})")
    try:
        options = cls(**values)
        check = getattr(options, "check", None)
        if callable(check):
            check(epochs)
    except (ValueError, RecipeError) as e:  # the plugin's own words, which may quote a user value
        raise RecipeError(prefix + cut(str(e), 600)) from None
    except YoloslimError as e:  # a check that found a missing file (ModelError), ...
        raise type(e)(f"{prefix}{e}") from None
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as e:  # noqa: BLE001 - a plugin's bug, sys.exit included, becomes one line
        fix = (
            f"fix the plugin or disable it with YOLOSLIM_DISABLE_PLUGINS={plugin}"
            if plugin
            else "fix or disable the plugin that declares the stage type"
        )
        raise PluginError(f"{prefix}{cls.__name__}.check raised {type(e).__name__}: {cut(str(e), 300)}; {fix}") from e
    return options


def options_dict(options: Any) -> dict[str, Any]:
    """The option values of a stage's options instance, as a JSON-serializable dict (tuples become lists)."""
    if isinstance(options, Mapping):
        return dict(options)

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(options, f.name)) for f in dataclasses.fields(options) if f.init}


def _constraint(spec: OptionSpec) -> str:
    if spec.choices:
        return "one of " + ", ".join(str(c) for c in spec.choices)
    return spec.range_text()


def schedule_text(st: Any) -> str:
    """Where a training stage type's default learning rate starts on the checkpoint's schedule, in words."""
    if st.schedule == "restart":
        return "starts at the checkpoint's own lr0 (a restart: the model must relearn), without warm-up"
    return "continues at the checkpoint's final learning rate (its lr0 x lrf), without warm-up"


def describe_stage_type(st: Any) -> list[str]:
    """Lines describing a stage type's options for ``yoloslim plugins --verbose`` (one option per line)."""
    lines = [f"{st.name}: {st.help}" if st.help else st.name]
    if st.accepts_training:
        defaults = ", ".join(f"{k}={v}" for k, v in st.train_defaults.items())
        lines.append(
            f"  epochs ({st.default_epochs}; CLI --{st.epochs_flag}): {st.epochs_help}"
            + (f"; trains with {defaults} unless set" if defaults else f"; {schedule_text(st)} unless set")
        )
    for name, spec in option_specs(st.options).items():
        rule = _constraint(spec)
        lines.append(f"  {name} ({spec.type_name}, {spec.default_text()}{'; ' + rule if rule else ''}): {spec.help}")
    return lines


def markdown_reference(stage_types: Mapping[str, Any]) -> str:
    """Every stage type's options as markdown: the text of ``docs/stage-options.md``.

    Regenerate that file with ``yoloslim plugins --markdown > docs/stage-options.md`` after changing a declaration;
    a test compares the two.
    """
    out = [
        "# Stage options",
        "",
        "Generated from the stage types' option declarations by `yoloslim plugins --markdown`; do not edit by hand.",
        "Each option is a recipe key of the stage and a flag of its subcommand (`max_layer_ratio` is "
        "`--max-layer-ratio`). 'auto' means the stage decides (see the option's text).",
        "",
    ]
    for st in sorted(stage_types.values(), key=lambda s: s.name):
        out += [f"## `{st.name}`", "", st.help + ("." if st.help and not st.help.endswith(".") else ""), ""]
        if st.accepts_training:
            defaults = ", ".join(f"`{k}={v}`" for k, v in st.train_defaults.items())
            out += [
                f"Trains: `epochs` (default {st.default_epochs}; `--{st.epochs_flag}` on the command line): "
                f"{st.epochs_help}. Takes a `train` block in recipes and Ultralytics training arguments as "
                "`key=value` on the command line"
                + (
                    f"; trains with {defaults} unless they are set."
                    if defaults
                    else f"; {schedule_text(st)}, unless `lr0` or `optimizer` are set."
                ),
                "",
            ]
        specs = option_specs(st.options)
        if not specs:
            out += ["No options of its own.", ""]
            continue
        out += ["| option | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for name, spec in specs.items():
            help_text = spec.help.replace("|", "\\|")
            out.append(
                f"| `{name}` | {spec.type_name} | {spec.default_text()} | {_constraint(spec) or '-'} | {help_text} |"
            )
        out.append("")
    return "\n".join(out)
