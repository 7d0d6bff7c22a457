"""Defence in depth for the write-only recorder: it must never open an identity file.

Under systemd the recorder's user cannot read `identities/` at all. For `doorbell run` and the
demo, where one user runs both processes, an audit hook makes any attempt to open a file in
`identities/` from the recorder process fail loudly instead.
"""

import os
import sys
from pathlib import Path


def forbid_identity_access(identities_dir: Path) -> None:
    forbidden = str(identities_dir.resolve()) + os.sep

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if os.path.realpath(path).startswith(forbidden):
                raise PermissionError(f"the recorder may not open {path}: it holds no keys")

    sys.addaudithook(hook)
