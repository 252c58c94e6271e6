"""Typed, strict configuration: one place for every setting, validated once at load; and where the
config and the models are read from.

``config.yaml`` (in the package, ``streamer/data/config.yaml``, and its copy at the repository root)
documents each key; these modules are the schema: ``schema.py`` the engine, ``analysis.py``,
``frames.py``, ``outputs.py``, ``audience.py`` and ``cameras.py`` the sections, ``load.py`` the whole and its loading, ``paths.py``
where files are found. Unknown keys and out-of-range values are rejected with the YAML path of the
key (``detector.score``).
"""

from .analysis import ClassifierConfig, DetectorConfig, DnnConfig, ModelsConfig
from .audience import AudienceConfig, LineConfig, ZoneConfig
from .cameras import CAMERA_SECTIONS, MODES, CameraConfig, SiteConfig
from .frames import CaptureConfig, MotionConfig, TrackingConfig
from .load import MAX_CONFIG_VALUES, Config, camera_config, load_config, override, parse_config
from .outputs import (
    ANONYMIZE_MODES,
    MIN_TOKEN_CHARS,
    MQTT_PASSWORD_ENV,
    MqttConfig,
    OutputConfig,
    ReportConfig,
    WebConfig,
)
from .paths import (
    DATA_DIR,
    LOCAL_CONFIG,
    MODELS_DIR_ENV,
    PACKAGE_DIR,
    PACKAGED_CONFIG,
    REPO_ROOT,
    checkout_root,
    config_path,
    default_models_dir,
    user_cache_dir,
)
from .schema import setting

__all__ = ['ANONYMIZE_MODES', 'AudienceConfig', 'CAMERA_SECTIONS', 'CameraConfig', 'MODES', 'SiteConfig', 'camera_config', 'LineConfig', 'ZoneConfig', 'CaptureConfig', 'ClassifierConfig', 'Config', 'DATA_DIR', 'DetectorConfig', 'DnnConfig', 'LOCAL_CONFIG', 'MAX_CONFIG_VALUES', 'MIN_TOKEN_CHARS', 'MODELS_DIR_ENV', 'MQTT_PASSWORD_ENV', 'ModelsConfig', 'MotionConfig', 'MqttConfig', 'OutputConfig', 'PACKAGED_CONFIG', 'PACKAGE_DIR', 'REPO_ROOT', 'ReportConfig', 'TrackingConfig', 'WebConfig', 'checkout_root', 'config_path', 'default_models_dir', 'load_config', 'override', 'parse_config', 'setting', 'user_cache_dir']
