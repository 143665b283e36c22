"""Plugin manager: entry-point discovery, allow/block lists, load failures, errors raised by plugins."""

import errno
import os
import sys
from dataclasses import dataclass

import pytest

from yoloslim import hookimpl
from yoloslim.errors import PluginError, RecipeError, StorageError
from yoloslim.plugins import PluginManager
from yoloslim.recipe import StageType
from yoloslim_test_support import run_cli, subprocess_env


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
    with pytest.raises(
        PluginError, match=r"plugin 'raiser' raised in yoloslim_report_columns: ZeroDivisionError: boom"
    ):
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


@pytest.fixture(scope="module")
def contract_site(tmp_path_factory):
    """A site folder with tests/assets/contractplug installed: entry points that break the hook contract."""
    import shutil

    from yoloslim_test_support import ROOT, pip_install_target

    site = tmp_path_factory.mktemp("contract-site")
    src = tmp_path_factory.mktemp("src-contractplug") / "contractplug"
    shutil.copytree(ROOT / "tests" / "assets" / "contractplug", src)
    pip_install_target(src, site)
    return site


def test_hookimpl_with_an_argument_the_hook_lacks_is_rejected_at_registration():
    class ExtraArg:
        @hookimpl
        def yoloslim_report_columns(self, measurement, ctx, colour):
            return {}

    pm = PluginManager(load_entrypoints=False)
    with pytest.raises(PluginError, match=r"'extra' does not match the yoloslim hook contract: .*colour") as e:
        pm.register(ExtraArg(), "extra")
    assert "\n" not in str(e.value)
    assert not pm.pm.has_plugin("extra") and pm.pm.hook.yoloslim_report_columns.get_hookimpls() == []


def test_stage_types_that_raise_or_are_not_stage_types_are_rejected_at_registration():
    class Raises:
        @hookimpl
        def yoloslim_stage_types(self):
            raise KeyError("options")

    class WrongType:
        @hookimpl
        def yoloslim_stage_types(self):
            return ["prune"]

    pm = PluginManager(load_entrypoints=False)
    with pytest.raises(PluginError, match=r"plugin 'raises' raised in yoloslim_stage_types: KeyError: 'options'"):
        pm.register(Raises(), "raises")
    with pytest.raises(PluginError, match=r"plugin 'wrong': yoloslim_stage_types returned \['prune'\], not a list"):
        pm.register(WrongType(), "wrong")
    assert pm.info() == [] and pm.stage_types() == {}


def test_contract_breaking_plugins_are_recorded_as_failed_and_the_others_load(contract_site, monkeypatch):
    from yoloslim.recipe import parse_recipe

    monkeypatch.syspath_prepend(str(contract_site))
    monkeypatch.delenv("YOLOSLIM_PLUGINS", raising=False)
    monkeypatch.delenv("YOLOSLIM_DISABLE_PLUGINS", raising=False)
    pm = PluginManager()
    assert set(pm.failed) == {"contract_name", "contract_arg", "contract_types"}
    assert "yoloslim_nonexistent" in pm.failed["contract_name"]
    assert "colour" in pm.failed["contract_arg"]
    assert "RuntimeError: shrinkwrap options are not ready" in pm.failed["contract_types"]
    for name, why in pm.failed.items():
        assert why.endswith(f"YOLOSLIM_DISABLE_PLUGINS={name}") and "\n" not in why
    loaded = {i.name for i in pm.info()}
    assert {"contract_exit", "finetune", "export"} <= loaded and not loaded & set(pm.failed)
    assert pm.pm.hook.yoloslim_report_columns.get_hookimpls()[0].plugin_name == "contract_exit"
    failed = r"unknown stage type 'shrinkwrap'.*plugins that failed to load: .*contract_types"
    with pytest.raises(RecipeError, match=failed):
        parse_recipe({"stages": [{"type": "shrinkwrap"}]}, pm.stage_types(), None, pm.failed)


def test_cli_plugins_lists_contract_breaking_plugins_as_failed(contract_site):
    r = run_cli("plugins", env=subprocess_env(PYTHONPATH=str(contract_site)))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "contract_exit  (yoloslim-contractplug 0.0.2)" in r.stdout
    assert "finetune  (" in r.stdout and "stage types: finetune" in r.stdout
    failed = {line.split()[0]: line for line in r.stdout.splitlines() if "FAILED TO LOAD" in line}
    assert set(failed) == {"contract_name", "contract_arg", "contract_types"}
    assert "raised in yoloslim_stage_types: RuntimeError" in failed["contract_types"]
    assert failed["contract_types"].endswith("YOLOSLIM_DISABLE_PLUGINS=contract_types")


def test_allowlist_naming_no_installed_plugin_is_recorded(monkeypatch):
    monkeypatch.setenv("YOLOSLIM_PLUGINS", "finetune, nosuchplug")
    monkeypatch.delenv("YOLOSLIM_DISABLE_PLUGINS", raising=False)
    pm = PluginManager()
    assert pm.unmatched == ["nosuchplug"]
    assert [i.name for i in pm.info()] == ["finetune"]
    assert "finetune" in pm.installed and "export" in pm.installed
    msg = pm.allowlist_message()
    assert msg.startswith("YOLOSLIM_PLUGINS names 'nosuchplug', which no installed plugin provides; installed: ")
    assert "export" in msg
    monkeypatch.setenv("YOLOSLIM_PLUGINS", "finetune")
    assert PluginManager().unmatched == [] and PluginManager().allowlist_message() == ""


def test_cli_plugins_says_when_the_allowlist_matches_nothing():
    r = run_cli("plugins", env=subprocess_env(YOLOSLIM_PLUGINS="nonexistent"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    assert lines[0].startswith("YOLOSLIM_PLUGINS names 'nonexistent', which no installed plugin provides; installed: ")
    assert "finetune" in lines[0]


class Exits:
    @hookimpl
    def yoloslim_report_columns(self, measurement):
        sys.exit(0)

    @hookimpl
    def yoloslim_model_to_save(self, model):
        raise SystemExit(3)


def test_sys_exit_in_a_hook_becomes_plugin_error_naming_the_plugin():
    pm = PluginManager(load_entrypoints=False)
    pm.register(Quiet(), "quiet")
    pm.register(Exits(), "exits")
    with pytest.raises(
        PluginError,
        match=r"plugin 'exits' called sys.exit\(0\) in yoloslim_report_columns; .*"
        r"YOLOSLIM_DISABLE_PLUGINS=exits",
    ):
        pm.call("yoloslim_report_columns", measurement=None, ctx=None)
    with pytest.raises(PluginError, match=r"plugin 'exits' called sys.exit\(3\) in yoloslim_model_to_save"):
        pm.chain("yoloslim_model_to_save", [], "model", ctx=None)


class Writes:
    """A hook that fails the way a full, read-only or forbidden disk makes a write fail."""

    def __init__(self, exc):
        self.exc = exc

    @hookimpl
    def yoloslim_build_artifact(self, checkpoint, stage, ctx):
        raise self.exc

    @hookimpl
    def yoloslim_model_to_save(self, model):
        raise self.exc


@pytest.mark.parametrize(
    "err, words",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/runs/x/model.onnx"), ["no space left on device", "free"]),
        (OSError(errno.EROFS, "Read-only file system", "/runs/x/model.onnx"), ["read-only file system", "writable"]),
        (PermissionError(errno.EACCES, "Permission denied", "/runs/x/model.onnx"), ["permission denied", "writable"]),
        (
            PermissionError(errno.EPERM, "Operation not permitted", "/runs/x/model.onnx"),
            ["permission denied", "writable"],
        ),
    ],
)
def test_disk_errors_in_a_hook_say_what_happened_and_name_the_path(err, words):
    pm = PluginManager(load_entrypoints=False)
    pm.register(Writes(err), "onnx")
    for run in (
        lambda: pm.call("yoloslim_build_artifact", checkpoint=None, stage=None, ctx=None),
        lambda: pm.chain("yoloslim_model_to_save", None, "model", ctx=None),
    ):
        with pytest.raises(StorageError) as e:
            run()
        msg = str(e.value)
        assert not isinstance(e.value, PluginError)
        assert "'/runs/x/model.onnx'" in msg and "--out" in msg and "DISABLE" not in msg
        for word in words:
            assert word in msg


def test_disk_full_wrapped_by_torch_or_raised_by_a_real_write_is_a_storage_error():
    wrapped = RuntimeError(
        "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: file write failed"
    )

    class DevFull:
        @hookimpl
        def yoloslim_build_artifact(self, checkpoint, stage, ctx):
            with open("/dev/full", "wb") as f:  # every write fails with ENOSPC
                f.write(b"x" * 65536)

    pm = PluginManager(load_entrypoints=False)
    pm.register(Writes(wrapped), "torchsave")
    with pytest.raises(StorageError, match=r"file write failed \(most often: no space left on device\); free"):
        pm.chain("yoloslim_model_to_save", None, "model", ctx=None)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/last.pt")
        except OSError as inner:
            raise RuntimeError("saving failed") from inner
    except RuntimeError as outer:
        chained = outer
    pm = PluginManager(load_entrypoints=False)
    pm.register(Writes(chained), "saver")
    with pytest.raises(StorageError, match=r"no space left on device: '/runs/x/last.pt'"):
        pm.call("yoloslim_build_artifact", checkpoint=None, stage=None, ctx=None)
    if os.path.exists("/dev/full"):
        pm = PluginManager(load_entrypoints=False)
        pm.register(DevFull(), "devfull")
        with pytest.raises(StorageError, match="no space left on device"):
            pm.call("yoloslim_build_artifact", checkpoint=None, stage=None, ctx=None)


def test_other_os_errors_in_a_hook_stay_plugin_errors():
    pm = PluginManager(load_entrypoints=False)
    pm.register(Writes(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/cfg.yaml")), "onnx")
    with pytest.raises(PluginError, match=r"plugin 'onnx' raised in yoloslim_build_artifact: FileNotFoundError"):
        pm.call("yoloslim_build_artifact", checkpoint=None, stage=None, ctx=None)


def test_bug_in_a_stage_types_check_names_the_plugin_that_declares_it():
    from yoloslim.recipe import parse_recipe

    class Buggy:
        @hookimpl
        def yoloslim_stage_types(self):
            @dataclass(frozen=True)
            class WobbleOptions:
                def check(self, epochs):
                    return {}["nope"]

            return [StageType("wobble", options=WobbleOptions)]

    pm = PluginManager(load_entrypoints=False)
    pm.register(Buggy(), "buggy")
    with pytest.raises(PluginError) as e:
        parse_recipe({"stages": [{"type": "wobble"}]}, pm.stage_types())
    assert str(e.value) == (
        "<recipe>: stage 1 (wobble): WobbleOptions.check raised KeyError: 'nope'; "
        "fix the plugin or disable it with YOLOSLIM_DISABLE_PLUGINS=buggy"
    )
