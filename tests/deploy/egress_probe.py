"""Record every network attempt of a process tree, two independent ways, and judge them.

1. An audit hook in every Python process: `install()` is called from a generated
   `sitecustomize.py` on PYTHONPATH, so it runs before any doorbell code in each interpreter the
   tree starts (`doorbell demo` starts `init`, `record` and `serve` as new interpreters; gunicorn
   forks, and a fork keeps the hook and the log descriptor). It logs socket creation, connect,
   sendto/sendmsg, bind and every name lookup (getaddrinfo, gethostbyname*, gethostbyaddr,
   getnameinfo) as JSON lines with the pid.
2. `strace -f -e trace=connect,sendto,sendmsg,sendmmsg` around the whole tree, which also sees
   what C libraries do behind Python's back (FFmpeg, OpenSSL, glibc's resolver).

`judge()` turns both logs into a list of violations: a connection or datagram to an address
outside the allowed networks, anything sent to port 53, a lookup of a name that is not an IP
literal or localhost, or a connection to a local resolver daemon's socket (nscd,
systemd-resolved, avahi), which would be a DNS lookup in disguise.
"""

import ipaddress
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace

ENV_LOG = "DOORBELL_EGRESS_LOG"
WATCHED = frozenset({
    "socket.__new__", "socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind",
    "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
    "socket.gethostbyaddr", "socket.getnameinfo",
})
LOOKUPS = frozenset({
    "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
    "socket.gethostbyaddr", "socket.getnameinfo",
})
SITECUSTOMIZE = "import egress_probe\negress_probe.install()\n"


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return repr(value)


def install(path: str | None = None) -> None:
    """Start logging this interpreter's network events (no-op without $DOORBELL_EGRESS_LOG)."""
    path = path or os.environ.get(ENV_LOG)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(record: dict) -> None:
        os.write(fd, (json.dumps(record) + "\n").encode())  # os.write raises no audit event

    write({"pid": os.getpid(), "event": "start", "args": _plain(sys.argv)})

    def hook(event: str, args: tuple) -> None:
        if event not in WATCHED:
            return
        if event == "socket.__new__":  # (socket, family, type, proto)
            args = args[1:]
        elif event in ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"):
            sock = args[0]
            args = (getattr(sock, "family", None), *args[1:])
        write({"pid": os.getpid(), "event": event, "args": _plain(args)})

    sys.addaudithook(hook)


def write_sitecustomize(directory: os.PathLike) -> None:
    with open(os.path.join(directory, "sitecustomize.py"), "w") as handle:
        handle.write(SITECUSTOMIZE)


# -- strace ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attempt:
    source: str  # "strace" or "audit"
    pid: int
    call: str
    family: str
    address: str
    port: int | None
    line: str
    succeeded: bool | None = None  # None: not known (the audit hook runs before the call)


_STRACE_CALL = re.compile(
    r"^(?P<pid>\d+)\s+(?P<call>connect|sendto|sendmsg|sendmmsg)\(")
_STRACE_RESUMED = re.compile(
    r"^(?P<pid>\d+)\s+<\.\.\. (?P<call>connect|sendto|sendmsg|sendmmsg) resumed>")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+)")
_SOCKADDR = re.compile(r"sa_family=(?P<family>AF_\w+)(?P<body>[^}]*)\}")
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_INET = re.compile(r'inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')
_UNIX = re.compile(r'sun_path=(@?"[^"]*")')


def _result(line: str) -> bool | None:
    found = _RESULT.search(line)
    return None if found is None else int(found.group(1)) >= 0


def parse_strace(text: str) -> list[Attempt]:
    """Calls with a socket address, from `strace -f -o FILE` (pid-prefixed lines).

    A call interrupted by another process's output is split into "<unfinished ...>" and
    "<... call resumed>" lines: its result is taken from the resumed line.
    """
    attempts: list[Attempt] = []
    pending: dict[tuple[int, str], list[int]] = {}
    for line in text.splitlines():
        resumed = _STRACE_RESUMED.match(line)
        if resumed:
            key = (int(resumed["pid"]), resumed["call"])
            for index in pending.pop(key, []):
                attempts[index] = replace(attempts[index], succeeded=_result(line),
                                          line=attempts[index].line + " ... " + line)
            continue
        match = _STRACE_CALL.match(line)
        if not match:
            continue
        pid, call = int(match["pid"]), match["call"]
        for sockaddr in _SOCKADDR.finditer(line):
            family, body = sockaddr["family"], sockaddr["body"]
            address, port = "", None
            if family == "AF_INET":
                found = _INET.search(body)
                address = found.group(1) if found else "?"
            elif family == "AF_INET6":
                found = _INET6.search(body)
                address = found.group(1) if found else "?"
            elif family == "AF_UNIX":
                found = _UNIX.search(body)
                address = found.group(1).strip('"') if found else ""
            port_match = _PORT.search(body)
            if port_match:
                port = int(port_match.group(1))
            if line.rstrip().endswith("<unfinished ...>"):
                pending.setdefault((pid, call), []).append(len(attempts))
            attempts.append(Attempt("strace", pid, call, family, address, port, line,
                                    _result(line)))
    return attempts


# -- the audit log ---------------------------------------------------------------------------------

def read_audit(path: os.PathLike) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def audit_attempts(records: Iterable[dict]) -> list[Attempt]:
    attempts = []
    for record in records:
        if record["event"] not in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            continue
        family, address = record["args"][0], record["args"][1]
        family_name = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6"}.get(family, f"family {family}")
        host, port = "", None
        if isinstance(address, list) and len(address) >= 2:
            host, port = str(address[0]), int(address[1])
        elif isinstance(address, str):
            host = address
        attempts.append(Attempt("audit", record["pid"], record["event"], family_name, host, port,
                                json.dumps(record)))
    return attempts


def lookups(records: Iterable[dict]) -> list[dict]:
    return [r for r in records if r["event"] in LOOKUPS]


def is_literal_or_localhost(name) -> bool:
    if name is None:
        return True  # getaddrinfo(None, port): the wildcard address, no lookup
    if isinstance(name, list):  # getnameinfo's sockaddr
        name = name[0] if name else ""
    text = str(name).split("%")[0]
    if text.lower() in ("localhost", "localhost.localdomain", ""):
        return True
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


# -- the verdict -----------------------------------------------------------------------------------

def _allowed(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def judge(attempts: Iterable[Attempt], audit_records: Iterable[dict],
          allowed_networks: Iterable[str]) -> list[str]:
    """Every way the recorded run broke "nothing leaves the home, no DNS"; empty when none."""
    networks = [ipaddress.ip_network(n) for n in allowed_networks]
    problems = []
    for attempt in attempts:
        if attempt.family in ("AF_INET", "AF_INET6"):
            if attempt.port == 53:
                problems.append(f"DNS traffic ({attempt.source}): {attempt.line}")
            elif not _allowed(attempt.address, networks):
                problems.append(f"outside the allowed networks ({attempt.source}): "
                                f"{attempt.line}")
        elif attempt.family == "AF_UNIX":
            if _asks_a_resolver(attempt):
                problems.append(f"name-service socket ({attempt.source}): {attempt.line}")
        elif attempt.family not in ("AF_NETLINK", "AF_UNSPEC"):
            problems.append(f"unexpected address family ({attempt.source}): {attempt.line}")
    for record in lookups(audit_records):
        if _is_dns(record):
            problems.append(f"name lookup: {json.dumps(record)}")
    return problems


def _asks_a_resolver(attempt: Attempt) -> bool:
    """systemd-resolved's and avahi's sockets answer host lookups only: any attempt counts.

    nscd also answers passwd and group lookups (getpass.getuser() asks it first), so only a
    connection that succeeded counts; a failed one asked nothing, and whatever glibc did next
    instead (files, or DNS: port 53) is judged on its own.
    """
    if "resolve" in attempt.address or "avahi" in attempt.address:
        return True
    return "nscd" in attempt.address and attempt.succeeded is not False


def _is_dns(record: dict) -> bool:
    """A forward lookup of a real name, or a reverse lookup (PTR) of a non-loopback address."""
    event, args = record["event"], record["args"]
    if event in ("socket.gethostbyaddr", "socket.getnameinfo"):
        if event == "socket.getnameinfo":
            sockaddr, flags = args[0], int(args[1]) if len(args) > 1 else 0
            if flags & 1:  # NI_NUMERICHOST: formats the address, asks nobody
                return False
            address = sockaddr[0] if isinstance(sockaddr, list) and sockaddr else str(sockaddr)
        else:
            address = str(args[0])
        try:
            return not ipaddress.ip_address(address.split("%")[0]).is_loopback
        except ValueError:
            return address.lower() != "localhost"
    return not is_literal_or_localhost(args[0] if args else None)
