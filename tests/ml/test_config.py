import subprocess
import sys
from pathlib import Path

import pytest

from worker.ml.config import (
    DEFAULT_ALGORITHM_PATH,
    build_base_model,
    build_miner,
    load_algorithm_config,
    load_default_config,
)
from worker.ml.errors import ConfigError
from worker.ml.miners import IBTMiner

VALID = """
basemodel:
  name: FPN
  hyperparameters: {learning_rate: 0.01, momentum: 0.95, max_iteration: 5, input_size: 96}
hard_example_mining:
  name: IBT
  hyperparameters: {threshold_img: 0.9, threshold_box: 0.9}
"""


def test_default_yaml_loads_and_builds_fpn_and_ibt():
    config = load_default_config()
    assert config.basemodel.name == "FPN"
    assert config.hard_example_mining.name == "IBT"
    miner = build_miner(config)
    assert isinstance(miner, IBTMiner)
    model = build_base_model(config, max_iteration=3)
    assert model.params["max_iteration"] == 3
    assert model.params["input_size"] == 192
    assert load_algorithm_config(DEFAULT_ALGORITHM_PATH) == config


def test_yaml_text_values_and_defaults():
    config = load_algorithm_config(VALID)
    params = config.basemodel.hyperparameters
    assert params["learning_rate"] == 0.01 and params["input_size"] == 96
    assert params["batch_size"] == 16  # defaulted
    assert config.hard_example_mining.hyperparameters == {
        "threshold_img": 0.9,
        "threshold_box": 0.9,
    }


@pytest.mark.parametrize(
    "text, field, words",
    [
        (
            "basemodel: {name: FPN, hyperparameters: {learning_rat: 0.1}}",
            "basemodel.hyperparameters.learning_rat",
            "unknown key",
        ),
        (
            "basemodel: {name: FPN, hyperparameters: {max_iteration: '5'}}",
            "basemodel.hyperparameters.max_iteration",
            "expected int",
        ),
        (
            "basemodel: {name: FPN, hyperparameters: {max_iteration: true}}",
            "basemodel.hyperparameters.max_iteration",
            "bool",
        ),
        (
            "basemodel: {name: FPN, hyperparameters: {optimizer: rmsprop}}",
            "basemodel.hyperparameters.optimizer",
            "one of",
        ),
        ("basemodel: {name: NoSuchModel}", "basemodel.name", "no general plugin"),
        (
            "basemodel: {name: FPN}\nhard_example_mining: {name: IBT, hyperparameters: "
            "{threshold_img: 1.5}}",
            "hard_example_mining.hyperparameters.threshold_img",
            "<= 1.0",
        ),
        (
            "basemodel: {name: FPN}\nhard_example_mining: {name: IBT, hyperparameters: "
            "{threshold_box: -0.1}}",
            "hard_example_mining.hyperparameters.threshold_box",
            ">= 0.0",
        ),
        ("basemodel: {name: FPN}\nextra: 1", "extra", "unknown key"),
        ("hard_example_mining: {name: IBT}", "basemodel", "missing"),
        ("basemodel: {name: FPN, params: {}}", "basemodel", "unknown key"),
        ("basemodel: [FPN]", "basemodel", "expected a mapping"),
    ],
)
def test_invalid_yaml_names_the_field(text, field, words):
    with pytest.raises(ConfigError) as error:
        load_algorithm_config(text)
    assert error.value.field == field
    assert words in str(error.value)


def test_unparsable_and_non_mapping_yaml():
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_algorithm_config("basemodel: {name: FPN\n  oops: [")
    with pytest.raises(ConfigError, match="mapping"):
        load_algorithm_config("- just\n- a list\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_algorithm_config("/nonexistent/algorithm.yaml")


def test_aliases_and_deep_nesting_are_refused_not_expanded():
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    with pytest.raises(ConfigError, match="aliases"):
        load_algorithm_config(laughs + "basemodel: {name: FPN}\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_algorithm_config("basemodel: " + "[" * 20_000 + "]" * 20_000)


def test_a_key_given_twice_is_refused_not_the_last_one_kept():
    for text in (
        "basemodel: {name: FPN}\nhard_example_mining: {name: IBT}\n"
        "hard_example_mining: {name: Random}",
        "basemodel:\n  name: FPN\n  hyperparameters: {learning_rate: 0.1, learning_rate: 0.5}",
    ):
        with pytest.raises(
            ConfigError, match="found the key '(hard_example_mining|learning_rate)' twice"
        ):
            load_algorithm_config(text)
    # The same key in two mappings is no repetition.
    config = load_algorithm_config(
        "basemodel: {name: FPN}\nhard_example_mining: {name: IBT, hyperparameters: {}}"
    )
    assert config.hard_example_mining.name == "IBT"


def test_fpn_input_size_must_be_multiple_of_32():
    config = load_algorithm_config("basemodel: {name: FPN, hyperparameters: {input_size: 100}}")
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_base_model(config)


def test_miner_overrides_are_validated_and_missing_miner_is_an_error():
    config = load_algorithm_config(VALID)
    with pytest.raises(ConfigError):
        build_miner(config, threshold_img=2.0)
    no_miner = load_algorithm_config("basemodel: {name: FPN}")
    with pytest.raises(ConfigError, match="no miner"):
        build_miner(no_miner)


def test_config_modules_do_not_import_tensorflow():
    code = (
        "import sys; from worker.ml.config import load_default_config, build_miner, "
        "build_base_model; c = load_default_config(); build_miner(c); build_base_model(c); "
        "import worker.ml.metrics, worker.ml.synthetic; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2]
    )
