"""Plugin manager: every plugin, first-party or third-party, comes from the ``yoloslim`` entry points.

Environment variables:

- ``YOLOSLIM_PLUGINS``: comma-separated allowlist of entry-point names; only these load.
- ``YOLOSLIM_DISABLE_PLUGINS``: comma-separated blocklist of entry-point names.

A plugin that fails to import is recorded (name and error) and logged; the run goes on, and a
recipe that needs one of its stages fails with an error that names it.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pluggy

from yoloslim import hookspecs
from yoloslim.errors import PluginError, YoloslimError
from yoloslim.recipe import StageType

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


class PluginManager:
    """The yoloslim plugin set: a pluggy manager plus load bookkeeping and safe hook calls."""

    def __init__(self, load_entrypoints: bool = True) -> None:
        """Build the manager and, by default, load the ``yoloslim`` entry points.

        Args:
            load_entrypoints: Load installed plugins (tests may start empty and ``register``).
        """
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.failed: dict[str, str] = {}
        self._dists: dict[str, tuple[str, str]] = {}
        if load_entrypoints:
            self._load_entrypoints()
        self._stage_types: dict[str, StageType] | None = None

    def _load_entrypoints(self) -> None:
        allow, block = _names("YOLOSLIM_PLUGINS"), _names("YOLOSLIM_DISABLE_PLUGINS")
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if (allow is not None and ep.name not in allow) or (block and ep.name in block):
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as e:  # any import-time failure of a third-party package
                self.failed[ep.name] = f"{type(e).__name__}: {e}"
                LOGGER.warning("plugin '%s' (%s) failed to load: %s", ep.name, ep.value, self.failed[ep.name])
                continue
            dist = getattr(ep, "dist", None)
            self.register(plugin, ep.name, package=dist.name if dist else "?", version=dist.version if dist else "?")

    def register(self, plugin: Any, name: str, package: str = "", version: str = "") -> None:
        """Register a plugin module or object under ``name``.

        Raises:
            PluginError: If ``name`` is taken or a hook implementation matches no hook.
        """
        if self.pm.has_plugin(name):
            raise PluginError(f"a plugin named '{name}' is already registered; give the entry point another name")
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            raise PluginError(f"plugin '{name}' does not match the yoloslim hook contract: {e}") from None
        if not package:
            mod = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "")
            package = (mod or "?").split(".")[0]
        self._dists[name] = (package, version or "?")
        self._stage_types = None

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
        fn = getattr(plugin, "yoloslim_stage_types", None)
        if fn is None:
            return []
        try:
            return list(fn() or [])
        except Exception as e:
            raise PluginError(f"plugin '{name}' raised in yoloslim_stage_types: {type(e).__name__}: {e}") from e

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

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` with ``kwargs``; a plugin's exception becomes a PluginError naming it.

        Returns:
            The list of results, or the first non-None result for first-result hooks.
        """
        caller = getattr(self.pm.hook, hook)
        try:
            return caller(**kwargs)
        except YoloslimError:
            raise
        except Exception as e:
            culprit = _find_plugin(e.__traceback__, caller.get_hookimpls())
            raise PluginError(
                f"plugin '{culprit}' raised in {hook}: {type(e).__name__}: {e}; "
                f"fix the plugin or disable it with YOLOSLIM_DISABLE_PLUGINS={culprit}"
            ) from e

    def chain(self, hook: str, value: Any, arg: str, **kwargs: Any) -> Any:
        """Pass ``value`` through every implementation of ``hook`` in call order (``None`` keeps it)."""
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            args = {**kwargs, arg: value}
            try:
                result = impl.function(**{k: args[k] for k in impl.argnames})
            except YoloslimError:
                raise
            except Exception as e:
                raise PluginError(
                    f"plugin '{impl.plugin_name}' raised in {hook}: {type(e).__name__}: {e}; "
                    f"fix the plugin or disable it with YOLOSLIM_DISABLE_PLUGINS={impl.plugin_name}"
                ) from e
            if result is not None:
                value = result
        return value


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
