"""Settings for the doorbell: a frozen dataclass model, loaded from TOML with strict validation.

    settings = load_settings(home)   # home/config.toml over the shipped config/default.toml
    settings.motion.sensitivity
"""

from doorbell.config.errors import ConfigError
from doorbell.config.loader import load_settings
from doorbell.config.model import (
    CameraSettings,
    DoorbellSettings,
    LiveSettings,
    MotionSettings,
    PrivacySettings,
    RecordingSettings,
    RetentionSettings,
    Settings,
    ViewerSettings,
)

__all__ = [
    "CameraSettings",
    "ConfigError",
    "DoorbellSettings",
    "LiveSettings",
    "MotionSettings",
    "PrivacySettings",
    "RecordingSettings",
    "RetentionSettings",
    "Settings",
    "ViewerSettings",
    "load_settings",
]
