"""Reading settings from files: the shipped config/default.toml, then a home's config.toml over it.

The conversion itself (TOML -> validated `Settings`, errors naming the key and line) is
config/validation.py's; this module only finds and reads the files.
"""

from importlib import resources
from os import PathLike
from pathlib import Path

from doorbell.config.errors import ConfigError
from doorbell.config.model import Settings
from doorbell.config.validation import parse_settings

CONFIG_FILE = "config.toml"


def shipped_settings() -> Settings:
    """The shipped config/default.toml: what every home's config.toml is read over."""
    shipped = resources.files(__package__) / "default.toml"
    return parse_settings(shipped.read_text(encoding="utf-8"), str(shipped), Settings())


def load_settings(home: str | PathLike[str]) -> Settings:
    """The shipped defaults, overridden key by key by home/config.toml if that file exists."""
    settings = shipped_settings()
    path = Path(home) / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a BOM from Windows editors
    except FileNotFoundError:
        return settings
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text.", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"the file cannot be read ({exc.strerror}).", source=str(path)) from None
    return parse_settings(text, str(path), settings)
