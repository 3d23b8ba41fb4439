import textwrap

import pytest

from worker.ml.errors import RegistryError
from worker.ml.registry import ClassFactory, ClassType, load_plugin_module


def test_builtin_plugins_are_found_by_alias():
    from worker.ml.fpn import FPNModel
    from worker.ml.miners import IBTMiner, MissedObjectMiner

    assert ClassFactory.get_cls(ClassType.GENERAL, "FPN") is FPNModel
    assert ClassFactory.get_cls(ClassType.HEM, "IBT") is IBTMiner
    assert ClassFactory.get_cls(ClassType.HEM, "MissedObject") is MissedObjectMiner
    assert {"IBT", "Threshold", "CrossEntropy", "Random", "Novelty"} <= set(
        ClassFactory.names(ClassType.HEM)
    )


def test_unknown_alias_lists_registered_names():
    with pytest.raises(RegistryError) as error:
        ClassFactory.get_cls(ClassType.HEM, "NoSuchMiner")
    assert "NoSuchMiner" in str(error.value)
    assert "IBT" in str(error.value)


def test_registering_an_alias_twice_is_an_error():
    @ClassFactory.register(ClassType.CALLBACK, alias="test-twice")
    class First:
        pass

    try:
        with pytest.raises(RegistryError, match="already registered"):

            @ClassFactory.register(ClassType.CALLBACK, alias="test-twice")
            class Second:
                pass

        # Re-registering the very same class is harmless (module imported twice).
        ClassFactory.register_cls(First, ClassType.CALLBACK, "test-twice")
    finally:
        ClassFactory.unregister(ClassType.CALLBACK, "test-twice")


def test_unknown_class_type_is_rejected():
    with pytest.raises(RegistryError, match="class type"):
        ClassFactory.register_cls(object, "no-such-type", "x")


def test_plugin_from_file_path_registers_itself_once(tmp_path):
    plugin = tmp_path / "my_miner.py"
    plugin.write_text(
        textwrap.dedent("""
        from worker.ml.miners import BaseMiner, MiningResult
        from worker.ml.registry import ClassFactory, ClassType

        @ClassFactory.register(ClassType.HEM, alias="TestAlwaysHard")
        class AlwaysHard(BaseMiner):
            def mine(self, inference=None):
                return MiningResult(True, 1.0)
    """)
    )
    try:
        module = load_plugin_module(str(plugin))
        assert load_plugin_module(str(plugin)) is module  # second load: no double registration
        miner = ClassFactory.get_cls(ClassType.HEM, "TestAlwaysHard")()
        assert miner([]) is True
    finally:
        ClassFactory.unregister(ClassType.HEM, "TestAlwaysHard")


def test_plugin_by_dotted_path_and_bad_paths():
    assert load_plugin_module("worker.ml.miners").__name__ == "worker.ml.miners"
    with pytest.raises(RegistryError, match="cannot be imported"):
        load_plugin_module("worker.ml.no_such_module")
    with pytest.raises(RegistryError, match="not found"):
        load_plugin_module("/nonexistent/plugin.py")


def test_plugin_that_fails_to_import_raises_typed_error(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(RegistryError, match="boom"):
        load_plugin_module(str(broken))
