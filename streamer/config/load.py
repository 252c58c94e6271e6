"""The whole config: its sections, reading and validating a YAML file once, and command-line
overrides."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from ..errors import ConfigError
from .analysis import ClassifierConfig, DetectorConfig, DnnConfig, ModelsConfig
from .audience import AudienceConfig
from .cameras import CAMERA_SECTIONS, CameraConfig, SiteConfig
from .frames import CaptureConfig, MotionConfig, TrackingConfig
from .outputs import MqttConfig, OutputConfig, ReportConfig, WebConfig
from .schema import _SHORT, _BadValue, _build, _Section, _UnknownKey, section, setting

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
    site: SiteConfig = dataclasses.field(default_factory=SiteConfig)
    cameras: Dict[str, CameraConfig] = setting(
        default={},
        description="Several cameras from this one file (`streamer run --config site.yaml` runs them all, each in "
        "its own process; --camera NAME runs one): names (1-40 letters, digits, '_', '-'; they become MQTT "
        "topic levels; not 'site', the site's own) to each camera's source, output, events, summary, mode, privacy, anonymize and "
        "labels, and overrides of the detector, classifier, capture, motion, tracking, report and audience "
        "sections for it alone. e.g. {door: {source: 'rtsp://cam1/stream', events: out/door.jsonl, mode: "
        "tracked}, till: {source: 'rtsp://cam2/stream', detector: {score: 0.6}}}. README, Several cameras.",
    )


def parse_config(data: Any, path: Path = Path("<config>")) -> Config:
    """Validate a mapping (parsed YAML) into a Config; raise ConfigError naming the bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    try:
        config = _build(Config, data)
    except _UnknownKey as error:
        raise ConfigError(f"{path}: {error}") from None
    except _BadValue as error:
        raise _bad_value(path, error) from None
    _check_camera_names(config, path)
    for name in config.cameras:  # each camera's merged config is checked now, not when it starts
        camera_config(config, name, path)
    return config


def _bad_value(path: Path, error: _BadValue, prefix: str = "") -> ConfigError:
    key = prefix + error.key
    return ConfigError(f"{path}: bad value for '{key}': {error.message} (got {_SHORT.repr(error.got)}); "
                       f"see the comment on '{error.key}' in config.yaml")


# No camera may be named so (case aside): the site's own MQTT topic level (streamer/site/mqtt.py).
RESERVED_CAMERA = "site"


def _check_camera_names(config: Config, path: Path) -> None:
    """Camera names differ in more than case: each is a Home Assistant device id, which is lower case.
    ``site`` is the site's own topic level on MQTT: refused whether MQTT is on or not, so that
    turning it on (--mqtt) never makes a config that ran fail."""
    seen: Dict[str, str] = {}
    for name in config.cameras:
        if name.lower() == RESERVED_CAMERA:
            raise ConfigError(f"{path}: cameras.{name}: '{RESERVED_CAMERA}' is reserved, with MQTT on or off: "
                              f"<topic_prefix>/{RESERVED_CAMERA}/... are the site's own MQTT topics (the people "
                              "count across cameras) and Home Assistant device. Rename the camera")
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise ConfigError(f"{path}: cameras '{other}' and '{name}' differ only in case; their MQTT devices "
                              "would be one. Rename one")


def camera_config(config: Config, name: str, path: Path = Path("<config>")) -> Config:
    """The config of camera ``name`` of ``config.cameras``: the global sections with the camera's
    overrides merged key by key, its mode and privacy switches applied, ``mqtt.camera`` set to its
    name (and an explicit ``mqtt.client_id`` suffixed by it: one id per connection), and no cameras
    of its own. ConfigError naming ``cameras.<name>.<key>`` for a bad override."""
    if name not in config.cameras:
        known = ", ".join(config.cameras) or "none"
        raise ConfigError(f"no camera '{name}' in the config; its cameras: {known}")
    camera = config.cameras[name]
    data = config.to_dict()
    data["cameras"] = {}
    prefix = f"cameras.{name}."
    for section_name in CAMERA_SECTIONS:
        for key, value in getattr(camera, section_name).items():
            if key not in data[section_name]:
                raise ConfigError(f"{path}: unknown config key '{prefix}{section_name}.{key}'; check the spelling "
                                  f"against the {section_name} section of config.yaml")
            data[section_name][key] = value
    for dotted, value in camera.changes().items():
        section_name, key = dotted.split(".")
        data[section_name][key] = value
    data["mqtt"]["camera"] = name
    if data["mqtt"]["client_id"]:
        data["mqtt"]["client_id"] = f"{data['mqtt']['client_id']}-{name}"
    try:
        return _build(Config, data)
    except _UnknownKey as error:
        raise ConfigError(f"{path}: {_UnknownKey(prefix + error.key, prefix + error.section)}") from None
    except _BadValue as error:
        raise _bad_value(path, error, prefix) from None


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's loader where PyYAML was built with it (~20x faster on config.yaml: ~100 ms of
    start-up with the pure-Python one), same safe subset of YAML, reading ``1e308`` and ``5e-3``
    as the numbers they are (YAML 1.1 wants a dot: a string, and the error said "expected a number")."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _mark(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML error: where, and what (PyYAML's own text spans several lines)."""
    if isinstance(error, yaml.constructor.ConstructorError) and "tag" in str(error.problem or ""):
        return f"a tag this config does not accept{_mark(error)} ({error.problem}); write plain values"
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    return f"not valid YAML{_mark(error)}: {problem}" + (f" ({context})" if context else "")


def _duplicate_keys(node: yaml.Node, where: str = "", seen: Optional[set] = None) -> None:
    """ConfigError for a key given twice in one mapping (YAML keeps the last one silently)."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias: checked where it was defined (and an alias bomb stays cheap)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: Dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            dotted = f"{where}{key}"
            if key is not None and key != "<<":
                if key in lines:
                    raise ConfigError(f"'{dotted}' is given twice, at lines {lines[key]} and "
                                      f"{key_node.start_mark.line + 1}; keep one")
                lines[key] = key_node.start_mark.line + 1
            _duplicate_keys(value_node, f"{dotted}.", seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _duplicate_keys(item, where, seen)


def _parse_yaml(text: str) -> Any:
    """Parse once: the node tree is checked for duplicate keys, then built into Python values."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _duplicate_keys(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_config(path: Optional[Path]) -> Config:
    """Read and validate a YAML config file; None gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--config {path} is a folder; pass the YAML file itself (e.g. {path / 'config.yaml'})")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; pass --config with an existing YAML file")
    try:
        data = _parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); "
                          "save the config as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: {_yaml_problem(error)[:300]}") from None
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
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
