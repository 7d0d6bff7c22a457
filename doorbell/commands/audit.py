"""`doorbell audit [--verify]`: read the audit log, or check its hash chain.

Both check the chain, so they agree: on a damaged log the listing still shows every entry it
can read, then warns on stderr with what --verify says, and both exit 1.
"""

import json
import sys

from doorbell.storage.audit import AuditLog
from doorbell.storage.home import Home

from ..errors import CommandError


def run(args) -> int:
    home = Home.resolve(args.home)
    if not home.audit_file.exists():
        raise CommandError(f"{home.audit_file} does not exist: run 'doorbell init' first")
    log = AuditLog(home.audit_file)
    result = log.verify()
    if args.verify:
        entries, head = log.head()
        print(result.message)
        print(f"{entries} entries; head SHA-256 {head} (keep a copy elsewhere to detect rewrites)")
        return 0 if result.ok else 1
    for entry in log.entries(strict=False):
        details = json.dumps(entry.details, ensure_ascii=False, sort_keys=True)
        print(f"{entry.seq:>5}  {entry.time}  {entry.actor}  {entry.action}  {details}")
    if not result.ok:
        sys.stdout.flush()  # the warning comes after the listing it is about
        print(f"doorbell: warning: the audit log is damaged: {result.message}", file=sys.stderr)
        return 1
    return 0
