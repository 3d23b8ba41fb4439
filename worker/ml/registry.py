"""Plugin registry with the seed's interface (``ClassFactory`` / ``ClassType``).

Differences from Sedna's class factory, on purpose:
- registering an alias twice raises ``RegistryError`` (Sedna silently overwrites, so two plugins
  with the same alias shadow each other depending on import order);
- asking for an unknown alias lists what is registered;
- the built-in plugins (FPN, the miners) are imported on first lookup, so ``get_cls`` works without
  the caller knowing which module defines what. None of this imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from worker.ml.errors import RegistryError

T = TypeVar("T")

# Modules whose classes register themselves on import. Kept light: fpn imports TF lazily.
BUILTIN_PLUGIN_MODULES = ("worker.ml.miners", "worker.ml.selectors", "worker.ml.fpn")


class ClassType:
    """Kinds of plugins (same names as Sedna's ClassType where they overlap)."""

    GENERAL = "general"  # base models (estimators)
    HEM = "hard_example_mining"  # hard-example miners
    CALLBACK = "callback"

    ALL = (GENERAL, HEM, CALLBACK)


class ClassFactory:
    """Maps (class type, alias) to a class."""

    __registry__: dict[str, dict[str, type]] = {}
    _builtins_loaded = False

    @classmethod
    def register(cls, type_name: str = ClassType.GENERAL, alias: str | None = None) -> Callable:
        """Class decorator: ``@ClassFactory.register(ClassType.GENERAL, alias="FPN")``."""

        def decorator(target: T) -> T:
            cls.register_cls(target, type_name, alias)
            return target

        return decorator

    @classmethod
    def register_cls(
        cls, target: type, type_name: str = ClassType.GENERAL, alias: str | None = None
    ):
        if type_name not in ClassType.ALL:
            raise RegistryError(f"unknown class type {type_name!r}; known: {list(ClassType.ALL)}")
        name = alias or target.__name__
        if not isinstance(name, str) or not name:
            raise RegistryError(f"alias must be a non-empty string, got {name!r}")
        entries = cls.__registry__.setdefault(type_name, {})
        existing = entries.get(name)
        if existing is not None and existing is not target:
            raise RegistryError(
                f"{type_name}/{name} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}; choose another alias"
            )
        entries[name] = target
        return target

    @classmethod
    def is_exists(cls, type_name: str, name: str) -> bool:
        cls._load_builtins()
        return name in cls.__registry__.get(type_name, {})

    @classmethod
    def names(cls, type_name: str) -> list[str]:
        cls._load_builtins()
        return sorted(cls.__registry__.get(type_name, {}))

    @classmethod
    def get_cls(cls, type_name: str, name: str) -> type:
        cls._load_builtins()
        entries = cls.__registry__.get(type_name, {})
        if name not in entries:
            raise RegistryError(
                f"no {type_name} plugin named {name!r}; registered: {sorted(entries) or 'none'}"
            )
        return entries[name]

    @classmethod
    def unregister(cls, type_name: str, name: str) -> None:
        """Remove an alias (used by tests and by plugin reloads)."""
        cls.__registry__.get(type_name, {}).pop(name, None)

    @classmethod
    def _load_builtins(cls) -> None:
        if cls._builtins_loaded:
            return
        cls._builtins_loaded = True
        for module_name in BUILTIN_PLUGIN_MODULES:
            importlib.import_module(module_name)


def load_plugin_module(path_or_dotted: str):
    """Import a user's plugin module so that its classes register themselves.

    Accepts a file path (``/x/my_miner.py``) or a dotted module path (``mypkg.my_miner``). Loading
    the same file twice returns the already loaded module instead of registering twice.
    """
    if not isinstance(path_or_dotted, str) or not path_or_dotted.strip():
        raise RegistryError(f"plugin module must be a path or dotted name, got {path_or_dotted!r}")
    candidate = Path(path_or_dotted)
    if path_or_dotted.endswith(".py") or candidate.exists():
        if not candidate.is_file():
            raise RegistryError(f"plugin file not found: {path_or_dotted}")
        resolved = str(candidate.resolve())
        digest = hashlib.sha256(resolved.encode()).hexdigest()[:12]
        module_name = f"ilportal_plugin_{candidate.stem}_{digest}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, resolved)
        if spec is None or spec.loader is None:
            raise RegistryError(f"cannot load plugin file {path_or_dotted}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except RegistryError:
            sys.modules.pop(module_name, None)
            raise
        except Exception as exc:  # a user's module may fail in any way; report it typed
            sys.modules.pop(module_name, None)
            raise RegistryError(f"plugin file {path_or_dotted} failed to import: {exc!r}") from exc
        return module
    try:
        return importlib.import_module(path_or_dotted)
    except ImportError as exc:
        raise RegistryError(f"plugin module {path_or_dotted!r} cannot be imported: {exc}") from exc
