"""Algorithm configuration: YAML in, validated ``AlgorithmConfig`` out.

Schema (see docs/ml.md)::

    basemodel:
      name: FPN                 # alias registered under ClassType.GENERAL
      hyperparameters: {...}    # checked against the plugin's HYPERPARAMETERS
    hard_example_mining:        # optional
      name: IBT                 # alias registered under ClassType.HEM
      hyperparameters: {...}
    plugins: [path/or.dotted]   # optional user modules imported before lookup

Unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from worker.ml.errors import ConfigError, RegistryError
from worker.ml.params import validate_params
from worker.ml.registry import ClassFactory, ClassType, load_plugin_module

DEFAULT_ALGORITHM_PATH = Path(__file__).with_name("default_algorithm.yaml")
TOP_LEVEL_KEYS = ("basemodel", "hard_example_mining", "plugins")
SECTION_KEYS = ("name", "hyperparameters")


@dataclass(frozen=True)
class PluginSpec:
    name: str
    class_type: str
    hyperparameters: dict = field(default_factory=dict)

    @property
    def cls(self) -> type:
        return ClassFactory.get_cls(self.class_type, self.name)

    def build(self, **overrides):
        return self.cls(**{**self.hyperparameters, **overrides})


@dataclass(frozen=True)
class AlgorithmConfig:
    basemodel: PluginSpec
    hard_example_mining: PluginSpec | None = None
    plugins: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        result = {
            "basemodel": {
                "name": self.basemodel.name,
                "hyperparameters": dict(self.basemodel.hyperparameters),
            }
        }
        if self.hard_example_mining is not None:
            result["hard_example_mining"] = {
                "name": self.hard_example_mining.name,
                "hyperparameters": dict(self.hard_example_mining.hyperparameters),
            }
        if self.plugins:
            result["plugins"] = list(self.plugins)
        return result


class PlainYamlLoader(yaml.SafeLoader):
    """YAML without aliases: algorithm files and data.yaml have no use for them, and a few nested
    aliases expand to billions of values for any code that walks the result ("billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not supported here", event.start_mark
            )
        return super().compose_node(parent, index)


class AlgorithmYamlLoader(PlainYamlLoader):
    """An algorithm YAML also may not give a key twice: YAML keeps the last one silently, so a
    second `hard_example_mining:` or `learning_rate:` further down would quietly replace the
    one the reader sees (and the loop page shows) first."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str | int | float | bool) or key is None:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"found the key {key!r} twice",
                            key_node.start_mark,
                        )
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(path_or_text) -> dict:
    if isinstance(path_or_text, dict):
        return path_or_text
    if isinstance(path_or_text, Path) or (
        isinstance(path_or_text, str)
        and "\n" not in path_or_text
        and path_or_text.endswith((".yaml", ".yml"))
    ):
        try:
            text = Path(path_or_text).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc}") from exc
    elif isinstance(path_or_text, str):
        text = path_or_text
    else:
        raise ConfigError(
            f"expected YAML text, a path or a dict, got {type(path_or_text).__name__}"
        )
    try:
        data = yaml.load(text, Loader=AlgorithmYamlLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError("invalid YAML: nested too deeply") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping, got {type(data).__name__}")
    return data


def _section(data: dict, key: str, class_type: str) -> PluginSpec:
    section = data[key]
    if not isinstance(section, dict):
        raise ConfigError(f"expected a mapping with 'name', got {type(section).__name__}", key)
    unknown = sorted(set(section) - set(SECTION_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; allowed: {list(SECTION_KEYS)}", key)
    name = section.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("expected a non-empty string (a registered alias)", f"{key}.name")
    try:
        cls = ClassFactory.get_cls(class_type, name)
    except RegistryError as exc:
        raise ConfigError(str(exc), f"{key}.name") from exc
    schema = getattr(cls, "HYPERPARAMETERS", None)
    if schema is None:
        raise ConfigError(f"plugin {name} declares no HYPERPARAMETERS", f"{key}.name")
    params = validate_params(schema, section.get("hyperparameters"), f"{key}.hyperparameters")
    return PluginSpec(name=name, class_type=class_type, hyperparameters=params)


def load_algorithm_config(path_or_text, *, allowed_plugins=None) -> AlgorithmConfig:
    """Parse and validate an algorithm configuration (a YAML path, YAML text or a dict).

    ``allowed_plugins``: the only plugin modules the YAML may name (None: any). Importing a module
    runs its code, so a caller whose YAML comes from a web form names those it trusts, and any
    other is refused before anything is imported.
    """
    data = _parse_yaml(path_or_text)
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; allowed: {list(TOP_LEVEL_KEYS)}", unknown[0])
    if "basemodel" not in data:
        raise ConfigError("missing (the base model's alias and hyperparameters)", "basemodel")
    plugins = data.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError("expected a list of module paths", "plugins")
    if allowed_plugins is not None:
        refused = [plugin for plugin in plugins if plugin not in allowed_plugins]
        if refused:
            raise ConfigError(
                f"{refused[0]!r} is not an allowed plugin module here; allowed: "
                f"{sorted(allowed_plugins) or 'none'}",
                "plugins",
            )
    for plugin in plugins:
        try:
            load_plugin_module(plugin)
        except RegistryError as exc:
            raise ConfigError(str(exc), "plugins") from exc
    basemodel = _section(data, "basemodel", ClassType.GENERAL)
    miner = None
    if data.get("hard_example_mining") is not None:
        miner = _section(data, "hard_example_mining", ClassType.HEM)
    return AlgorithmConfig(basemodel=basemodel, hard_example_mining=miner, plugins=tuple(plugins))


def load_default_config() -> AlgorithmConfig:
    return load_algorithm_config(DEFAULT_ALGORITHM_PATH)


def build_base_model(config: AlgorithmConfig, **overrides):
    """Instantiate the configured base model; ``overrides`` replace hyperparameters."""
    return config.basemodel.build(**overrides)


def build_miner(config: AlgorithmConfig, **overrides):
    """Instantiate the configured hard-example miner (``ConfigError`` if none is configured)."""
    if config.hard_example_mining is None:
        raise ConfigError("no miner configured", "hard_example_mining")
    return config.hard_example_mining.build(**overrides)
