"""Who is acting, for the audit log, and the rule that nothing changes unaudited."""

import getpass

from doorbell.storage.audit import AuditLog
from doorbell.storage.home import Home

from .errors import CommandError


def cli_actor(member: str | None = None) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{member} (cli:{user})" if member else f"cli:{user}"


def intact_audit_log(home: Home) -> AuditLog:
    """The audit log, if it can record the change about to be made; else refuse the change.

    Checked before a key change or a deletion, so that a damaged log cannot be used to make
    changes that leave no trace.
    """
    log = AuditLog(home.audit_file)
    result = log.verify()
    if not result.ok:
        raise CommandError(
            f"the audit log is damaged, so nothing is changed until it is repaired: "
            f"{result.message.rstrip('.')}"
        )
    return log
