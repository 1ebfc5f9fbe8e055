"""Typed configs: every shipped config file loads, precedence, strict errors with exit code 2."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from environments.registry import get_spec, registered_env_types
from utils.config import (
    ConfigError,
    load_config,
    load_saved_config,
    read_mapping_file,
    save_config,
)
from utils.errors import run_script
from utils.stage_configs import STAGE_CONFIGS, DataCollectionConfig, FocalConfig

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILES = [
    (stage, path)
    for stage, (_, folder) in STAGE_CONFIGS.items()
    for path in sorted((ROOT / folder).glob("*.*"))
]


def test_every_config_folder_is_enumerated_and_holds_files():
    folders = {folder for _, folder in STAGE_CONFIGS.values()}
    assert folders == {"data_collection_config", "vae_config", "offline_config", "online_config",
                       "configs"}
    for folder in folders:
        assert any((ROOT / folder).iterdir()), folder


@pytest.mark.parametrize(("stage", "path"), CONFIG_FILES,
                         ids=[f"{stage}:{path.name}" for stage, path in CONFIG_FILES])
def test_every_config_file_loads_into_its_stage_config(stage, path):
    config_class, folder = STAGE_CONFIGS[stage]
    env_type = path.stem
    assert env_type in registered_env_types(), f"{path.name} names no registered env-type"
    config = load_config(config_class, ["--env-type", env_type], config_dir=folder)
    assert config.env_type == env_type
    mapping = read_mapping_file(path)
    for key, value in mapping.items():
        if key != "env_type":
            loaded = getattr(config, key)
            assert loaded == value or (isinstance(value, int) and loaded == value), key
    if stage == "data_collection" and config.algorithm != "auto":
        discrete = get_spec(env_type).family_class().__name__ == "GridWorld"
        assert (config.algorithm == "dqn") == discrete


def test_precedence_defaults_env_file_config_file_flags(tmp_path):
    folder = tmp_path / "stage_config"
    folder.mkdir()
    (folder / "gridworld.yaml").write_text("num_iters: 5\nrl_updates_per_iter: 7\ngamma: 0.5\n")
    override = tmp_path / "override.yaml"
    override.write_text("rl_updates_per_iter: 9\ngamma: 0.6\n")
    config = load_config(
        DataCollectionConfig,
        ["--env-type", "gridworld", "--config", str(override), "--gamma", "0.7"],
        config_dir=folder,
    )
    assert config.num_iters == 5  # env file over default
    assert config.rl_updates_per_iter == 9  # --config over env file
    assert config.gamma == 0.7  # flag over everything
    assert config.batch_size == DataCollectionConfig().batch_size  # default


@pytest.mark.parametrize("text", ["true", "True", "1"])
def test_booleans_accept_true_and_1(text):
    assert load_config(DataCollectionConfig, ["--env-type", "x", "--resume", text]).resume


@pytest.mark.parametrize("text", ["false", "0"])
def test_booleans_accept_false_and_0(text):
    config = load_config(DataCollectionConfig, ["--env-type", "x", "--save-models", text])
    assert config.save_models is False


def test_flag_values_are_typed():
    config = load_config(DataCollectionConfig, [
        "--env-type=gridworld", "--num-iters", "12", "--critic-lr", "1e-3",
        "--critic-hidden-sizes", "[64, 32]", "--target-entropy", "null",
        "--env-options", "start_distribution=uniform,num_cells=6", "--seeds", "0-3",
    ])
    assert config.num_iters == 12 and isinstance(config.num_iters, int)
    assert config.critic_lr == 1e-3
    assert config.critic_hidden_sizes == [64, 32]
    assert config.target_entropy is None
    assert config.env_options == {"start_distribution": "uniform", "num_cells": 6}
    assert config.seeds == "0-3"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env-type", "x", "--num-iter", "3"], "unknown flag '--num-iter'.*--num-iters"),
        (["--env-type", "x", "--num-iters", "ten"], "--num-iters .* must be int, got 'ten'"),
        (["--env-type", "x", "--num-iters", "2.5"], "must be int"),
        (["--env-type", "x", "--resume", "yes"], "must be bool"),
        (["--env-type", "x", "--device", "gpu"], "one of 'auto', 'cpu', 'cuda'"),
        (["--env-type", "x", "--gamma", "nan"], "must be float"),
        (["--env-type", "x", "--critic-hidden-sizes", "a,b"], "list of int"),
        (["--env-type", "x", "--num-iters"], "needs a value"),
        (["--env-type", "x", "stray"], "unexpected argument 'stray'"),
        (["--num-iters", "3"], "missing --env-type"),
        (["--env-type", "x", "--seed", "1", "--seed", "2"], "given twice"),
    ],
)
def test_bad_flags_are_rejected_with_a_clear_message(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DataCollectionConfig, argv)


def test_bad_file_values_name_the_key_and_the_file(tmp_path):
    folder = tmp_path / "stage_config"
    folder.mkdir()
    (folder / "gridworld.yaml").write_text("num_itres: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'num_itres' in stage_config/gridworld.yaml"
                       r".*num_iters"):
        load_config(DataCollectionConfig, ["--env-type", "gridworld"], config_dir=folder)
    (folder / "gridworld.yaml").write_text("num_iters: '5'\n")
    with pytest.raises(ConfigError, match="num_iters in stage_config/gridworld.yaml must be int"):
        load_config(DataCollectionConfig, ["--env-type", "gridworld"], config_dir=folder)
    (folder / "gridworld.yaml").write_text("num_iters: [5\n")
    with pytest.raises(ConfigError, match="not valid yaml"):
        load_config(DataCollectionConfig, ["--env-type", "gridworld"], config_dir=folder)
    with pytest.raises(ConfigError, match=r"no config file for env-type 'gridwrld'.*gridworld"):
        load_config(DataCollectionConfig, ["--env-type", "gridwrld"], config_dir=folder)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(DataCollectionConfig, ["--env-type", "gridworld", "--config",
                                           str(tmp_path / "missing.yaml")], config_dir=folder)


def test_yaml_is_read_with_the_safe_loader(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("env_type: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid yaml"):
        read_mapping_file(path)


def test_focal_json_config_loads_from_a_positional_style_path():
    config = load_config(FocalConfig, ["--config", str(ROOT / "configs/sparse-point-robot.json")],
                         config_dir="configs")
    assert config.env_type == "sparse-point-robot"
    assert config.sparse_rewards is True and config.discount == 0.9 and config.use_brac is False


def test_resolved_config_round_trips_through_config_yaml(tmp_path):
    config = load_config(DataCollectionConfig, ["--env-type", "gridworld", "--num-iters", "3"],
                         config_dir="data_collection_config")
    save_config(config, tmp_path / "config.yaml")
    assert load_saved_config(DataCollectionConfig, tmp_path / "config.yaml") == config
    text = (tmp_path / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(text + "surprise: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'surprise'"):
        load_saved_config(DataCollectionConfig, tmp_path / "config.yaml")


def test_every_field_has_a_help_text():
    for config_class, _ in STAGE_CONFIGS.values():
        for field in dataclasses.fields(config_class):
            assert field.metadata.get("help"), f"{config_class.__name__}.{field.name}"


def test_run_script_turns_user_errors_into_exit_code_2(capsys):
    def main():
        load_config(DataCollectionConfig, ["--env-type", "x", "--num-iter", "3"])

    with pytest.raises(SystemExit) as exit_info:
        run_script(main)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: unknown flag '--num-iter'")


def test_a_script_exits_with_code_2_and_one_line(tmp_path):
    program = (
        "from utils.config import load_config\n"
        "from utils.errors import run_script\n"
        "from utils.stage_configs import DataCollectionConfig\n"
        "run_script(lambda: load_config(DataCollectionConfig,\n"
        "                               config_dir='data_collection_config'))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program, "--env-type", "gridworld", "--num-iters", "x"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: --num-iters in the command line must be int, got 'x'"
    ]


def test_every_registered_env_type_has_a_data_collection_config():
    missing = [env_type for env_type in registered_env_types()
               if not (ROOT / "data_collection_config" / f"{env_type}.yaml").is_file()]
    assert missing == []


def test_every_vae_config_has_an_offline_config():
    vae = {path.stem for path in (ROOT / "vae_config").glob("*.yaml")}
    offline = {path.stem for path in (ROOT / "offline_config").glob("*.yaml")}
    assert vae == offline
