"""The whole config: its sections, reading and validating a YAML file once, and command-line
overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from ..errors import ConfigError
from .analysis import ClassifierConfig, DetectorConfig, DnnConfig, ModelsConfig
from .audience import AudienceConfig
from .frames import CaptureConfig, MotionConfig, TrackingConfig
from .outputs import MqttConfig, OutputConfig, ReportConfig, WebConfig
from .schema import _SHORT, _BadValue, _build, _Section, _UnknownKey, section

# A config is a few hundred values. YAML aliases can make a few lines expand to billions (an
# "alias bomb"), which would take minutes and gigabytes to check: refuse anything above this.
MAX_CONFIG_VALUES = 10_000


@section
class Config(_Section):
    models: ModelsConfig = dataclasses.field(default_factory=ModelsConfig)
    dnn: DnnConfig = dataclasses.field(default_factory=DnnConfig)
    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = dataclasses.field(default_factory=ClassifierConfig)
    capture: CaptureConfig = dataclasses.field(default_factory=CaptureConfig)
    motion: MotionConfig = dataclasses.field(default_factory=MotionConfig)
    tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    mqtt: MqttConfig = dataclasses.field(default_factory=MqttConfig)
    report: ReportConfig = dataclasses.field(default_factory=ReportConfig)
    web: WebConfig = dataclasses.field(default_factory=WebConfig)
    audience: AudienceConfig = dataclasses.field(default_factory=AudienceConfig)


def parse_config(data: Any, path: Path = Path("<config>")) -> Config:
    """Validate a mapping (parsed YAML) into a Config; raise ConfigError naming the bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    try:
        return _build(Config, data)
    except _UnknownKey as error:
        raise ConfigError(f"{path}: {error}") from None
    except _BadValue as error:
        raise ConfigError(f"{path}: bad value for '{error.key}': {error.message} (got {_SHORT.repr(error.got)}); "
                          f"see the comment on '{error.key}' in config.yaml") from None


def load_config(path: Optional[Path]) -> Config:
    """Read and validate a YAML config file; None gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; pass --config with an existing YAML file")
    try:
        # libyaml's loader where PyYAML was built with it: ~20x faster on config.yaml (~100 ms of
        # start-up with the pure-Python one), same safe subset of YAML.
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); "
                          "save the config as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {str(error)[:300]}") from None
    if _count_values(data, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigError(f"{path}: expands to more than {MAX_CONFIG_VALUES} values (YAML aliases repeating "
                          "lists?); a config holds a few hundred: write the values out")
    return parse_config(data, path)


def _count_values(data: Any, limit: int) -> int:
    """Values in parsed YAML with every alias expanded, counting stops just past ``limit`` (so an
    alias bomb costs microseconds here, not the minutes a full walk would)."""
    count, stack = 0, [data]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return count


def override(config: Config, changes: Dict[str, Any]) -> Config:
    """A copy with dotted-path changes applied and validated, e.g. ``{"output.window": False}``."""
    data = config.to_dict()
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return parse_config(data, Path("<command line>"))
