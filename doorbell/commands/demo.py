"""`doorbell demo`: everything local, no camera needed.

Makes `./doorbell-demo` (once) with a member called "demo" and a generated passphrase, then
runs the recorder on the built-in synthetic doorstep and the viewer on http://127.0.0.1:8080.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

from doorbell.storage.home import Home

from ..supervisor import supervise

DEMO_MEMBER = "demo"
PASSPHRASE_FILE = "DEMO-PASSPHRASE.txt"  # noqa: S105 (a file name)
DEMO_CONFIG = """\
# The demo: the synthetic camera, recording encrypted clips; the viewer on loopback only.
[camera]
source = "synthetic"
width = 1280
height = 720
fps = 15

[viewer]
bind = "127.0.0.1:8080"
"""


def prepare_demo_home(root: Path) -> str:
    """Initialise the demo home once; return the demo passphrase."""
    home = Home(root.absolute())
    secret = home.root / PASSPHRASE_FILE
    if home.is_initialised():
        return secret.read_text().splitlines()[0]
    home.root.mkdir(parents=True, exist_ok=True)
    passphrase = "-".join(secrets.token_hex(3) for _ in range(4))
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(passphrase + "\n# The demo member's passphrase. A real install has none "
                     "stored: delete this demo when you are done.\n")
    (home.root / "config.toml").write_text(DEMO_CONFIG)
    subprocess.run(
        [sys.executable, "-m", "doorbell", "init", "--home", str(home.root), "--user",
         DEMO_MEMBER, "--passphrase-file", str(secret), "--work-factor", "15"],
        check=True, stdout=subprocess.DEVNULL,
    )
    return passphrase


def run(args) -> int:
    root = Path(args.dir)
    passphrase = prepare_demo_home(root)
    print(
        f"Doorbell demo in {root.absolute()}\n"
        f"  Open http://{args.bind}/ and unlock as '{DEMO_MEMBER}' with passphrase: {passphrase}\n"
        "  The synthetic camera shows visitors every minute or so; clips appear on the "
        "timeline.\n  Stop with Ctrl-C.",
        flush=True,
    )
    home_args = ["--home", str(root.absolute())]
    return supervise([*home_args, "--source", "synthetic"], [*home_args, "--bind", args.bind])
