"""Plugin manager: entry-point discovery, allow/block lists, load failures, errors raised by plugins."""

import pytest

from yoloslim_test_support import run_cli, subprocess_env
from yoloslim import hookimpl
from yoloslim.errors import PluginError
from yoloslim.plugins import PluginManager
from yoloslim.recipe import StageType


@pytest.fixture
def with_site(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.delenv("YOLOSLIM_PLUGINS", raising=False)
    monkeypatch.delenv("YOLOSLIM_DISABLE_PLUGINS", raising=False)
    return plugin_site


def test_installed_third_party_plugin_is_discovered_with_package_version_and_hooks(with_site):
    pm = PluginManager()
    info = {i.name: i for i in pm.info()}
    assert {"testplug", "finetune", "export", "onnx"} <= set(info)
    t = info["testplug"]
    assert (t.package, t.version) == ("yoloslim-testplug", "0.3.1")
    assert "yoloslim_extra_loss" in t.hooks and "yoloslim_train_end" in t.hooks
    assert t.stage_types == ["l2shrink"]
    assert "l2shrink" in pm.stage_types() and "finetune" in pm.stage_types()


def test_plugin_that_fails_to_import_is_reported_and_others_load(with_site):
    pm = PluginManager()
    assert "brokenplug" in pm.failed
    assert "ModuleNotFoundError" in pm.failed["brokenplug"]
    assert "yoloslim_dependency_that_does_not_exist" in pm.failed["brokenplug"]
    assert pm.pm.has_plugin("testplug")


def test_allowlist_and_blocklist(with_site, monkeypatch):
    monkeypatch.setenv("YOLOSLIM_PLUGINS", "testplug,finetune")
    assert {i.name for i in PluginManager().info()} == {"testplug", "finetune"}
    monkeypatch.delenv("YOLOSLIM_PLUGINS")
    monkeypatch.setenv("YOLOSLIM_DISABLE_PLUGINS", "testplug, brokenplug")
    pm = PluginManager()
    assert not pm.pm.has_plugin("testplug") and "brokenplug" not in pm.failed and pm.pm.has_plugin("onnx")


class Raiser:
    @hookimpl
    def yoloslim_report_columns(self, measurement):
        raise ZeroDivisionError("boom")


class Quiet:
    @hookimpl
    def yoloslim_report_columns(self, measurement):
        return {"x": 1}


def test_exception_in_a_plugin_becomes_plugin_error_naming_it():
    pm = PluginManager(load_entrypoints=False)
    pm.register(Quiet(), "quiet")
    pm.register(Raiser(), "raiser")
    with pytest.raises(PluginError, match=r"plugin 'raiser' raised in yoloslim_report_columns: ZeroDivisionError: boom"):
        pm.call("yoloslim_report_columns", measurement=None, ctx=None)


def test_misspelled_hook_is_rejected_at_registration():
    class Typo:
        @hookimpl
        def yoloslim_extra_los(self, batch):
            return {}

    pm = PluginManager(load_entrypoints=False)
    with pytest.raises(PluginError, match="'typo' does not match the yoloslim hook contract"):
        pm.register(Typo(), "typo")
    assert not pm.pm.has_plugin("typo")


def test_two_plugins_declaring_one_stage_type_is_an_error():
    class A:
        @hookimpl
        def yoloslim_stage_types(self):
            return [StageType("prune")]

    pm = PluginManager(load_entrypoints=False)
    pm.register(A(), "a")
    pm.register(A(), "b")
    with pytest.raises(PluginError, match="'prune' is declared by both 'a' and 'b'"):
        pm.stage_types()


def test_chain_passes_each_result_to_the_next_plugin():
    class Add:
        def __init__(self, n):
            self.n = n

        @hookimpl
        def yoloslim_model_to_save(self, model):
            return None if self.n == 0 else model + [self.n]

    pm = PluginManager(load_entrypoints=False)
    for n in (1, 0, 2):
        pm.register(Add(n), f"add{n}")
    assert sorted(pm.chain("yoloslim_model_to_save", [], "model", ctx=None)) == [1, 2]


def test_cli_plugins_lists_loaded_and_failed_plugins(plugin_site):
    r = run_cli("plugins", env=subprocess_env(PYTHONPATH=str(plugin_site)))
    assert r.returncode == 0, r.stderr
    assert "testplug  (yoloslim-testplug 0.3.1)" in r.stdout
    assert "stage types: l2shrink" in r.stdout
    assert "brokenplug  FAILED TO LOAD: ModuleNotFoundError" in r.stdout
