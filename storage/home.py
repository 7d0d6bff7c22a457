"""Where everything lives under the doorbell's home directory (one place, so no path is guessed).

    config.toml            settings (config package)
    recipients.txt         public keys: all the recorder reads to encrypt
    identities/NAME.age    each member's private key, encrypted to their passphrase (viewer only)
    clips/YYYY/MM/DD/      ID.mp4.age, ID.jpg.age, ID.json.age (ID.*.partial while written)
    index.sqlite3          what must stay readable without a key: id, start, state, size
    audit.jsonl            hash-chained audit log (+ audit.jsonl.head)
    motion-tuning.json     trial motion values while the viewer's tuner is open (no footage)

Runtime files (the live frame, the recorder's status) never go under the home: they live in
$DOORBELL_RUNTIME_DIR (systemd's RuntimeDirectory, a tmpfs) or else in /dev/shm, so a masked
live frame is never written to persistent storage.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SYSTEM_HOME = Path("/var/lib/doorbell")


@dataclass(frozen=True, slots=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, given: str | os.PathLike | None) -> "Home":
        """`--home`, else `$DOORBELL_HOME`, else the path the installer uses."""
        chosen = given or os.environ.get("DOORBELL_HOME") or DEFAULT_SYSTEM_HOME
        return cls(Path(chosen).expanduser().absolute())

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def recipients_file(self) -> Path:
        return self.root / "recipients.txt"

    @property
    def identities_dir(self) -> Path:
        return self.root / "identities"

    @property
    def clips_dir(self) -> Path:
        return self.root / "clips"

    @property
    def index_file(self) -> Path:
        return self.root / "index.sqlite3"

    @property
    def audit_file(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def run_dir(self) -> Path:
        if os.environ.get("DOORBELL_RUNTIME_DIR"):
            return Path(os.environ["DOORBELL_RUNTIME_DIR"])
        tag = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        # prepare_runtime_dir refuses the directory unless it is ours (no symlink games).
        return Path("/dev/shm") / f"doorbell-{os.getuid()}-{tag}"  # noqa: S108

    @property
    def live_frame_file(self) -> Path:
        return self.run_dir / "live.jpg"

    @property
    def recorder_status_file(self) -> Path:
        return self.run_dir / "recorder.json"

    @property
    def events_file(self) -> Path:
        """The recorder's last events, one JSON line each (storage.exchange.EventLine)."""
        return self.run_dir / "events.jsonl"

    @property
    def motion_overlay_file(self) -> Path:
        """The tuner's overlay (boxes, score, trial values), written only while tuning."""
        return self.run_dir / "motion-overlay.json"

    @property
    def motion_mask_file(self) -> Path:
        """The tuner's detector mask (PNG at detection size), written only while tuning."""
        return self.run_dir / "motion-mask.png"

    @property
    def motion_tuning_file(self) -> Path:
        """Trial motion values from the viewer's tuner (no footage): the viewer writes it, the
        recorder reads it. Under the home, not the runtime directory, because the recorder's
        runtime directory is not writable by the viewer's user."""
        return self.root / "motion-tuning.json"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def viewer_db_file(self) -> Path:
        return self.root / "viewer.sqlite3"

    def is_initialised(self) -> bool:
        return self.recipients_file.is_file()
