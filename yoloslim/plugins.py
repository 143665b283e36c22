"""Plugin manager: every plugin, first-party or third-party, comes from the ``yoloslim`` entry points.

Environment variables:

- ``YOLOSLIM_PLUGINS``: comma-separated allowlist of entry-point names; only these load.
- ``YOLOSLIM_DISABLE_PLUGINS``: comma-separated blocklist of entry-point names.

A plugin that fails to import, breaks the hook contract (a hook the spec does not have, an argument
it does not pass) or raises while declaring its stage types is recorded in ``failed`` (name -> error
and the disable hint), logged and left out; the run goes on, and a recipe that needs one of its stages
fails with an error that names it. Allowlist names that match no installed plugin are kept in
``unmatched`` and logged.

Any exception a hook raises, ``sys.exit`` included, becomes a :class:`~yoloslim.errors.PluginError`
naming the plugin, except a failed write (disk full, read-only, permission denied), which becomes a
:class:`~yoloslim.errors.StorageError` naming the path: disabling the plugin would not fix it.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pluggy

from yoloslim import hookspecs
from yoloslim.errors import PluginError, YoloslimError, storage_error
from yoloslim.recipe import StageType, short_repr

LOGGER = logging.getLogger("yoloslim.plugins")
ENTRY_POINT_GROUP = "yoloslim"


@dataclass
class PluginInfo:
    """What ``yoloslim plugins`` shows for one plugin."""

    name: str
    package: str
    version: str
    hooks: list[str] = field(default_factory=list)
    stage_types: list[str] = field(default_factory=list)


def _names(var: str) -> set[str] | None:
    value = os.environ.get(var, "").strip()
    return {x.strip() for x in value.split(",") if x.strip()} if value else None


def _disable_hint(name: str) -> str:
    return f"fix the plugin or disable it with YOLOSLIM_DISABLE_PLUGINS={name}"


def _reason(e: BaseException, limit: int = 300) -> str:
    """``Type: message`` of ``e`` on one line, cut to ``limit`` characters."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hook_error(plugin: str, hook: str, e: BaseException) -> YoloslimError:
    """The one-line error for exception ``e`` raised by ``plugin`` inside ``hook``."""
    stored = storage_error(e)
    if stored is not None:  # the disk, not the plugin: disabling it would not help
        return stored
    if isinstance(e, SystemExit):
        return PluginError(
            f"plugin '{plugin}' called sys.exit({short_repr(e.code)}) in {hook}; {_disable_hint(plugin)}"
        )
    return PluginError(f"plugin '{plugin}' raised in {hook}: {_reason(e)}; {_disable_hint(plugin)}")


def _passes_through(e: BaseException) -> bool:
    """Exceptions a hook call lets through as they are: our own errors and the user's interrupt."""
    return isinstance(e, (YoloslimError, KeyboardInterrupt, GeneratorExit))


class PluginManager:
    """The yoloslim plugin set: a pluggy manager plus load bookkeeping and safe hook calls.

    Attributes:
        pm: The pluggy manager.
        failed: Plugins left out, name -> why and the disable hint.
        unmatched: Names in ``YOLOSLIM_PLUGINS`` that no installed entry point provides.
        installed: Names of every installed ``yoloslim`` entry point (loaded or not).
    """

    def __init__(self, load_entrypoints: bool = True) -> None:
        """Build the manager and, by default, load the ``yoloslim`` entry points.

        Args:
            load_entrypoints: Load installed plugins (tests may start empty and ``register``).
        """
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.failed: dict[str, str] = {}
        self.unmatched: list[str] = []
        self.installed: list[str] = []
        self._dists: dict[str, tuple[str, str]] = {}
        self._declared: dict[str, list[StageType]] = {}
        self._stage_types: dict[str, StageType] | None = None
        if load_entrypoints:
            self._load_entrypoints()

    def _load_entrypoints(self) -> None:
        allow, block = _names("YOLOSLIM_PLUGINS"), _names("YOLOSLIM_DISABLE_PLUGINS")
        eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        self.installed = sorted({ep.name for ep in eps})
        if allow is not None:
            self.unmatched = sorted(allow - set(self.installed))
            if self.unmatched:
                LOGGER.warning("%s", self.allowlist_message())
        for ep in eps:
            if (allow is not None and ep.name not in allow) or (block and ep.name in block):
                continue
            if self.pm.has_plugin(ep.name) or ep.name in self.failed:
                continue
            try:
                plugin = ep.load()
                dist = getattr(ep, "dist", None)
                self.register(
                    plugin, ep.name, package=dist.name if dist else "?", version=dist.version if dist else "?"
                )
            except (KeyboardInterrupt, GeneratorExit):
                raise
            except PluginError as e:  # breaks the hook contract or its stage types: leave it out, keep the others
                self._fail(ep.name, ep.value, str(e))
            except BaseException as e:  # noqa: BLE001 - any import-time failure of a third-party package, sys.exit too
                self._fail(ep.name, ep.value, _reason(e))

    def _fail(self, name: str, value: str, reason: str) -> None:
        self.failed[name] = f"{reason}; {_disable_hint(name)}"
        LOGGER.warning("plugin '%s' (%s) failed to load: %s", name, value, self.failed[name])

    def allowlist_message(self) -> str:
        """One line saying which ``YOLOSLIM_PLUGINS`` names match no installed plugin ('' when all match)."""
        if not self.unmatched:
            return ""
        names = ", ".join(f"'{n}'" for n in self.unmatched)
        which = (
            "which no installed plugin provides" if len(self.unmatched) == 1 else "which no installed plugins provide"
        )
        return (
            f"YOLOSLIM_PLUGINS names {names}, {which}; installed: {', '.join(self.installed) or 'none'}; "
            "fix the names or unset YOLOSLIM_PLUGINS"
        )

    def register(self, plugin: Any, name: str, package: str = "", version: str = "") -> None:
        """Register a plugin module or object under ``name``.

        Raises:
            PluginError: If ``name`` is taken, a hook implementation matches no hook (or takes an argument the hook
                does not pass), or its ``yoloslim_stage_types`` raises or returns something else than StageTypes.
                The plugin is then not registered.
        """
        if self.pm.has_plugin(name):
            raise PluginError(f"a plugin named '{name}' is already registered; give the entry point another name")
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
            declared = self._declare(name, plugin)
        except BaseException as e:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            if isinstance(e, (KeyboardInterrupt, GeneratorExit, PluginError)):
                raise
            if isinstance(e, pluggy.PluginValidationError):
                raise PluginError(
                    f"plugin '{name}' does not match the yoloslim hook contract: {' '.join(str(e).split())}"
                ) from None
            raise PluginError(f"plugin '{name}' could not be registered: {_reason(e)}") from e
        if not package:
            mod = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "")
            package = (mod or "?").split(".")[0]
        self._dists[name] = (package, version or "?")
        self._declared[name] = declared
        self._stage_types = None

    def _declare(self, name: str, plugin: Any) -> list[StageType]:
        """Call the plugin's ``yoloslim_stage_types`` once and check what it returns."""
        impl = next((i for i in self.pm.hook.yoloslim_stage_types.get_hookimpls() if i.plugin_name == name), None)
        if impl is None:
            return []
        try:
            result = impl.function()
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as e:  # noqa: BLE001 - a plugin bug, sys.exit included
            raise PluginError(f"plugin '{name}' raised in yoloslim_stage_types: {_reason(e)}") from e
        types = [] if result is None else result
        if not isinstance(types, (list, tuple)) or not all(isinstance(st, StageType) for st in types):
            raise PluginError(
                f"plugin '{name}': yoloslim_stage_types returned {short_repr(result)}, "
                "not a list of yoloslim.recipe.StageType"
            )
        return [self._check_declaration(name, st) for st in types]

    @staticmethod
    def _check_declaration(plugin: str, st: StageType) -> StageType:
        """``st`` if its options declaration can be read (see :mod:`yoloslim.options`), else PluginError naming it."""
        from collections.abc import Mapping

        try:
            st.specs  # noqa: B018 - reads and checks the declaration
        except PluginError as e:
            raise PluginError(f"plugin '{plugin}': stage type '{st.name}': {e}") from None
        except Exception as e:  # noqa: BLE001 - a declaration typing.get_type_hints cannot read
            raise PluginError(
                f"plugin '{plugin}': stage type '{st.name}': its options declaration cannot be read ({_reason(e)})"
            ) from None
        if not isinstance(st.train_defaults, Mapping):
            raise PluginError(
                f"plugin '{plugin}': stage type '{st.name}': train_defaults must be a mapping of "
                f"Ultralytics training arguments, got {short_repr(st.train_defaults)}"
            )
        if st.schedule not in ("resume", "restart"):
            raise PluginError(
                f"plugin '{plugin}': stage type '{st.name}': schedule must be 'resume' or 'restart', got "
                f"{short_repr(st.schedule)}"
            )
        return dataclasses.replace(st, plugin=plugin)

    def info(self) -> list[PluginInfo]:
        """Return what is loaded: name, package, version, implemented hooks, stage types."""
        out = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
            types = [st.name for st in self._types_of(name, plugin)]
            package, version = self._dists.get(name, ("?", "?"))
            out.append(PluginInfo(name, package, version, hooks, types))
        return sorted(out, key=lambda p: p.name)

    def _types_of(self, name: str, plugin: Any) -> list[StageType]:
        if name not in self._declared:  # registered on self.pm directly, bypassing register()
            self._declared[name] = self._declare(name, plugin)
        return self._declared[name]

    def stage_types(self) -> dict[str, StageType]:
        """Return every declared stage type by name.

        Raises:
            PluginError: If two plugins declare the same stage type.
        """
        if self._stage_types is None:
            types: dict[str, StageType] = {}
            owner: dict[str, str] = {}
            for name, plugin in self.pm.list_name_plugin():
                for st in self._types_of(name, plugin):
                    if st.name in types:
                        raise PluginError(
                            f"stage type '{st.name}' is declared by both '{owner[st.name]}' and '{name}'; "
                            f"disable one with YOLOSLIM_DISABLE_PLUGINS={name}"
                        )
                    types[st.name], owner[st.name] = st, name
            self._stage_types = types
        return self._stage_types

    def export_formats(self) -> list[str] | None:
        """The formats the loaded plugins can export here, as their ``yoloslim_export_formats`` declare them.

        Returns:
            The format names, sorted, or ``None`` when some plugin implements ``yoloslim_export`` without declaring
            its formats (it may write any format, so no format can be refused up front).
        """
        hooks = self.pm.hook
        declaring = {impl.plugin_name for impl in hooks.yoloslim_export_formats.get_hookimpls()}
        if any(impl.plugin_name not in declaring for impl in hooks.yoloslim_export.get_hookimpls()):
            return None
        results = self.call("yoloslim_export_formats") or []
        return sorted({str(f) for formats in results for f in (formats or [])})

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` with ``kwargs``; a plugin's exception (``sys.exit`` too) becomes one error naming it.

        Returns:
            The list of results, or the first non-None result for first-result hooks.

        Raises:
            StorageError: If the hook failed to write a file (disk full, read-only, permission denied).
            PluginError: If the hook raised anything else that is not a YoloslimError or an interrupt.
        """
        caller = getattr(self.pm.hook, hook)
        try:
            return caller(**kwargs)
        except BaseException as e:
            if _passes_through(e):
                raise
            culprit = _find_plugin(e.__traceback__, caller.get_hookimpls())
            raise _hook_error(culprit, hook, e) from e

    def chain(self, hook: str, value: Any, arg: str, **kwargs: Any) -> Any:
        """Pass ``value`` through every implementation of ``hook`` in call order (``None`` keeps it).

        Raises:
            StorageError, PluginError: As :meth:`call`.
        """
        return self.chain_acted(hook, value, arg, **kwargs)[0]

    def chain_acted(self, hook: str, value: Any, arg: str, **kwargs: Any) -> tuple[Any, bool]:
        """As :meth:`chain`, and whether any implementation returned something (it may have changed ``value`` in place).

        Raises:
            StorageError, PluginError: As :meth:`call`.
        """
        acted = False
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            args = {**kwargs, arg: value}
            try:
                result = impl.function(**{k: args[k] for k in impl.argnames})
            except BaseException as e:
                if _passes_through(e):
                    raise
                raise _hook_error(impl.plugin_name, hook, e) from e
            if result is not None:
                value, acted = result, True
        return value, acted


def _find_plugin(tb: TracebackType | None, impls: list[Any]) -> str:
    """Name the plugin whose hook function appears deepest in ``tb``."""
    codes = {impl.function.__code__: impl.plugin_name for impl in impls if hasattr(impl.function, "__code__")}
    found = "unknown"
    while tb is not None:
        found = codes.get(tb.tb_frame.f_code, found)
        tb = tb.tb_next
    return found


_MANAGER: PluginManager | None = None


def get_plugin_manager(reload: bool = False) -> PluginManager:
    """Return the process-wide plugin manager, loading entry points on first use."""
    global _MANAGER
    if _MANAGER is None or reload:
        _MANAGER = PluginManager()
    return _MANAGER
