"""`doorbell audit [--verify]`: read the audit log, or check its hash chain."""

import json

from doorbell.storage.audit import AuditLog
from doorbell.storage.home import Home

from ..errors import CommandError


def run(args) -> int:
    home = Home.resolve(args.home)
    if not home.audit_file.exists():
        raise CommandError(f"{home.audit_file} does not exist: run 'doorbell init' first")
    log = AuditLog(home.audit_file)
    if args.verify:
        result = log.verify()
        entries, head = log.head()
        print(result.message)
        print(f"{entries} entries; head SHA-256 {head} (keep a copy elsewhere to detect rewrites)")
        return 0 if result.ok else 1
    for entry in log.entries():
        details = json.dumps(entry.details, ensure_ascii=False, sort_keys=True)
        print(f"{entry.seq:>5}  {entry.time}  {entry.actor}  {entry.action}  {details}")
    return 0
