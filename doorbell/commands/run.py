"""`doorbell run [--home DIR]`: the recorder and the viewer, as two processes."""

from storage.home import Home

from ..errors import CommandError
from ..supervisor import supervise


def run(args) -> int:
    home = Home.resolve(args.home)
    if not home.is_initialised():
        raise CommandError(f"{home.root} is not initialised: run 'doorbell init' first")
    home_args = ["--home", str(home.root)]
    return supervise(home_args, home_args)
