"""Config: strict validation with the YAML path of the bad key; config.yaml documents every key."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest
import yaml

from streamer.config import (
    PACKAGED_CONFIG,
    REPO_ROOT,
    CameraConfig,
    Config,
    ModelsConfig,
    MotionConfig,
    config_path,
    default_models_dir,
    load_config,
    override,
    parse_config,
    user_cache_dir,
)
from streamer.errors import ConfigError

CONFIG_YAML = REPO_ROOT / "config.yaml"


def _leaf_paths(model, prefix=""):
    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        path = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            yield from _leaf_paths(value, path + ".")
        else:
            yield path, field


@pytest.mark.parametrize(
    "data, message",
    [
        ({"detector": {"scor": 0.5}}, "unknown config key 'detector.scor'"),
        ({"detectr": {}}, "unknown config key 'detectr'"),
        ({"detector": {"score": 1.5}}, "'detector.score'"),
        ({"detector": {"name": "haar"}}, "'detector.name'"),
        ({"classifier": {"min_face_px": 0}}, "'classifier.min_face_px'"),
        ({"classifier": {"age_groups": [[0, 9], [5, 20]]}}, "'classifier.age_groups'"),
        ({"capture": {"queue_size": "many"}}, "'capture.queue_size'"),
        ({"output": {"codecs": []}}, "'output.codecs'"),
        ({"output": {"window": "yes"}}, "'output.window': expected true or false"),
        ({"detector": {"score": True}}, "'detector.score': expected a number"),
        ({"dnn": {"threads": 2.5}}, "'dnn.threads': expected an integer"),
        ({"detector": {"fallback": "haar"}}, "'detector.fallback': expected one of 'centerface'"),
        ({"classifier": {"age_groups": [[0, 9, 3]]}}, "'classifier.age_groups'"),
        ({"tracking": {"min_samples": 5, "max_samples": 3}}, "'tracking.max_samples': must be >= min_samples (5)"),
        ({"detector": "fast"}, "'detector': expected a mapping"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(data)


def test_empty_and_missing_sections_give_defaults():
    assert parse_config(None) == Config()
    assert parse_config({}) == Config()
    assert parse_config({"detector": {"score": 0.7}}).detector.score == 0.7


def test_values_are_typed_and_null_is_kept():
    config = parse_config({"detector": {"fallback": None, "max_side_px": 640, "nms_iou": 1}, "classifier": {"age_groups": [[0, 50], [51, 120]]}})
    assert config.detector.fallback is None
    assert config.detector.nms_iou == 1.0 and isinstance(config.detector.nms_iou, float)
    assert config.classifier.age_groups == [(0, 50), (51, 120)]
    assert config.to_dict()["classifier"]["age_groups"] == [[0, 50], [51, 120]]


def test_sections_built_in_code_are_checked_too():
    assert Config(output={"codecs": ["MJPG"]}).output.codecs == ["MJPG"]
    with pytest.raises(ValueError, match="must be >= 1"):
        MotionConfig(refresh_frames=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().detector.score = 0.1


def test_override_validates():
    assert override(Config(), {"output.window": False}).output.window is False
    with pytest.raises(ConfigError, match="detector.score"):
        override(Config(), {"detector.score": 2.0})


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_config_yaml_is_the_defaults_and_documents_every_key():
    text = CONFIG_YAML.read_text(encoding="utf-8")
    assert load_config(CONFIG_YAML) == Config(), "config.yaml must hold the defaults (sane out of the box)"
    data = yaml.safe_load(text)
    lines = text.splitlines()
    for path, field in _leaf_paths(Config()):
        assert field.metadata["description"], f"{path} has no description in streamer/config/"
        if path == "cameras":  # a mapping of named cameras, empty by default: its keys are in comments
            assert "cameras: {}" in lines and all(f"#   {f.name}:" in text for f in dataclasses.fields(CameraConfig))
            continue
        section, key = path.split(".")
        assert key in data[section], f"config.yaml lacks {path}"
        # The line above each key (or the key's own line) carries a comment.
        at = next(i for i, line in enumerate(lines) if re.match(rf"\s+{key}:", line) and _in_section(lines, i, section))
        assert "#" in lines[at] or lines[at - 1].strip().startswith("#"), f"config.yaml: {path} has no comment"


def _in_section(lines, index, section):
    for line in reversed(lines[:index]):
        if re.match(r"^\S", line) and not line.startswith("#"):
            return line.startswith(f"{section}:")
    return False


def test_packaged_and_repository_config_are_the_generated_defaults():
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    try:
        from write_config import render
    finally:
        sys.path.remove(str(REPO_ROOT / "tools"))
    expected = render(Config())
    assert PACKAGED_CONFIG.read_text(encoding="utf-8") == expected, "run `python tools/write_config.py --write`"
    assert CONFIG_YAML.read_text(encoding="utf-8") == expected, "run `python tools/write_config.py --write`"


def test_config_path_explicit_then_working_directory_then_packaged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_path(None) == PACKAGED_CONFIG
    assert load_config(config_path(None)) == Config()
    (tmp_path / "config.yaml").write_text("detector:\n  score: 0.4\n")
    assert load_config(config_path(None)).detector.score == 0.4
    assert config_path(tmp_path / "other.yaml") == tmp_path / "other.yaml"


@pytest.mark.parametrize(
    "env, configured, expected",
    [
        ({}, None, "default"),
        ({"STREAMER_MODELS_DIR": "/a:/b"}, "/c", ["/a", "/b"]),
        ({}, "/c", ["/c"]),
        ({}, "rel/models", ["{cwd}/rel/models"]),
        ({"STREAMER_MODELS_DIR": "~/m"}, None, ["{home}/m"]),
    ],
)
def test_models_dirs_env_first_then_config_then_default(env, configured, expected, tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMER_MODELS_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    dirs = ModelsConfig(dir=configured).resolved_dirs()
    if expected == "default":
        assert dirs == [default_models_dir()]
    else:
        assert dirs == [Path(e.format(cwd=tmp_path, home=tmp_path / "home")) for e in expected]


def test_checkout_uses_its_models_folder():
    # These tests run from a checkout: pyproject.toml and models/ beside the package.
    assert default_models_dir() == REPO_ROOT / "models"


@pytest.mark.parametrize("xdg, expected", [("/x/cache", "/x/cache/streamer"), ("relative/cache", "{home}/.cache/streamer"),
                                           ("", "{home}/.cache/streamer")])
def test_user_cache_follows_xdg(xdg, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert user_cache_dir() == Path(expected.format(home=tmp_path))


@pytest.mark.parametrize("text, message", [
    ("detector:\n  name: centerface\n  name: res10\n", "'detector.name' is given twice, at lines 2 and 3"),
    ("mqtt:\n  topics:\n    events: a\n    events: b\n", "'mqtt.topics.events' is given twice, at lines 3 and 4"),
    ("detector:\n  name: centerface\ndetector:\n  score: 0.5\n", "'detector' is given twice, at lines 1 and 3"),
])
def test_a_key_given_twice_is_refused_with_both_lines(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_exponent_numbers_are_numbers_and_a_folder_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output:\n  segment_s: 5e1\n")
    assert load_config(path).output.segment_s == 50.0
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
