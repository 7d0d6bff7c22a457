"""`doorbell run [--home DIR]`: the recorder and the viewer, as two processes.

On a home with no household keys yet, the viewer prints a set-up code and serves the set-up
page; the recorder waits until set-up is finished, then records.
"""

from doorbell.storage.home import Home

from ..supervisor import supervise


def run(args) -> int:
    home = Home.resolve(args.home)
    home.root.mkdir(mode=0o750, parents=True, exist_ok=True)
    home_args = ["--home", str(home.root)]
    return supervise(home_args, home_args)
