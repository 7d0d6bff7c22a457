#!/usr/bin/env bash
# Install the doorbell on Raspberry Pi OS (Bookworm or newer) or Debian 12+: run as root from a
# checkout of the repository. Idempotent: run it again after pulling to upgrade.
#
#   sudo deploy/install.sh                 install or upgrade, enable the two services
#   sudo deploy/install.sh --firewall      also install the nftables egress rules
#   sudo deploy/install.sh --recorder-lan  let the recorder reach the LAN (RTSP camera, LAN
#                                          notification target); it has no network otherwise
#   sudo deploy/install.sh --no-systemd    install files only, never call systemctl (a chroot,
#                                          an image being built); implied when systemd is not
#                                          running
#   sudo deploy/install.sh --uninstall     remove services, users and the program; KEEP
#                                          /var/lib/doorbell (footage, keys, audit log)
#   sudo deploy/install.sh --uninstall --purge   ... and delete /var/lib/doorbell too
#   deploy/install.sh --check-ip-filter    only check whether the kernel enforces the units'
#                                          IPAddressDeny= (exit 0 yes, 1 no, 2 cannot tell)
#   deploy/install.sh --python-only [--venv DIR]   only (re)install the doorbell's Python
#                                          packages into the virtualenv (default below), held
#                                          to the system's numpy; needs no root for your own DIR
#
# What it sets up (see deploy/README.md for the reasoning):
#   /opt/doorbell/venv        virtualenv (--system-site-packages: the apt camera stack is
#                             visible), the project installed from this checkout with
#                             venv/pip-constraints.txt: pip never replaces apt's numpy
#   users doorbell-rec, doorbell-view, primary group doorbell
#   user doorbell-replica, its own group doorbell-replica (the viewer is a member: it reads
#                             the replicator's progress.json); it READS what it copies through
#                             ACLs (group doorbell-replica: r on files, r-x on directories,
#                             default ACLs for what is made later) and writes nothing there
#   /var/lib/doorbell         2770 doorbell-view:doorbell  (the data directory)
#     identities/, tls/       0700 doorbell-view           (the recorder cannot read them;
#                                                          identities/: doorbell-replica r too)
#     clips/                  2770 group doorbell          (recorder writes, viewer reads/deletes)
#     index.sqlite3, audit.jsonl  0660 group doorbell      (both write)
#     config.toml, recipients.txt readable by the group
#   /etc/systemd/system/doorbell-{recorder,viewer}.service (enabled)
#   /etc/systemd/system/doorbell-replicate.service (enabled; starts once paired and keyed)
#   /var/lib/doorbell-replica 0750 doorbell-replica        (its progress.json)
#   /usr/local/bin/doorbell   the admin's command: runs the venv's doorbell as doorbell-view
#                             (sudo doorbell clips list, sudo doorbell export-all --to DIR)
#   /etc/avahi/services/doorbell.service  when avahi-daemon is installed (Raspberry Pi OS
#                             and Debian desktops have it; `apt install avahi-daemon` on a
#                             minimal Debian): the viewer advertised on the home network, and
#                             NAME.local resolves
set -euo pipefail

PREFIX=/opt/doorbell
VENV=$PREFIX/venv
HOME_DIR=/var/lib/doorbell
UNIT_DIR=/etc/systemd/system
CONF_DIR=/etc/doorbell
GROUP=doorbell
REC_USER=doorbell-rec
VIEW_USER=doorbell-view
REPLICA_USER=doorbell-replica
REPLICA_GROUP=doorbell-replica  # the replicator's own group: read-only on the data (ACLs)
REPLICA_STATE=/var/lib/doorbell-replica
REPLICA_UNIT=doorbell-replicate.service  # not behind the firewall unit: it needs the LAN
UNITS=(doorbell-recorder.service doorbell-viewer.service)
FIREWALL_UNIT=doorbell-firewall.service
ADMIN_COMMAND=/usr/local/bin/doorbell
ADMIN_MARK="the doorbell command for the device's administrator"  # in deploy/bin/doorbell
AVAHI_SERVICE=/etc/avahi/services/doorbell.service
VIEWER_PORT=8443  # CONFIG_TEMPLATE's viewer.bind, and deploy/avahi/doorbell.service's port
SYSTEM_PYTHON=/usr/bin/python3  # apt's python3-picamera2 and python3-numpy are for this one
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

use_systemd=auto
firewall=no
recorder_lan=no
action=install
purge=no

say() { printf 'doorbell-install: %s\n' "$*"; }
warn() { printf 'doorbell-install: WARNING: %s\n' "$*" >&2; }
die() { printf 'doorbell-install: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --no-systemd) use_systemd=no ;;
    --firewall) firewall=yes ;;
    --recorder-lan) recorder_lan=yes ;;
    --uninstall) action=uninstall ;;
    --purge) purge=yes ;;
    --check-ip-filter) action=check-ip-filter ;;
    --python-only) action=python-only ;;
    --venv) shift; [ $# -gt 0 ] || usage 2; VENV=$1 ;;
    --src) shift; [ $# -gt 0 ] || usage 2; SRC=$(cd "$1" && pwd) ;;
    -h|--help) usage 0 ;;
    *) printf 'doorbell-install: unknown option %s\n' "$1" >&2; usage 2 ;;
  esac
  shift
done
if [ "$purge" = yes ] && [ "$action" != uninstall ]; then
  die "--purge only goes with --uninstall"
fi

systemd_running() { [ -d /run/systemd/system ]; }

decide_systemd() {
  if [ "$use_systemd" = auto ]; then
    if systemd_running; then
      use_systemd=yes
    else
      use_systemd=no
      say "systemd is not running here: installing the unit files without starting anything."
    fi
  fi
}

# -- is IPAddressDeny= enforced? ---------------------------------------------------------------
# systemd needs cgroup v2 (the unified hierarchy) and cgroup-BPF to filter addresses; without
# them it logs "... does not support BPF/cgroup based firewalling. Proceeding WITHOUT firewalling
# in effect!" once per boot, and the units' IPAddressDeny=/IPAddressAllow= do nothing.
check_ip_filter() {
  if ! systemd_running && [ -z "${DOORBELL_FORCE_IP_FILTER_CHECK:-}" ]; then
    say "systemd is not running: cannot tell whether IPAddressDeny= will be enforced."
    return 2
  fi
  local journal reason=""
  journal=$(journalctl -b --no-pager -q -o cat 2>/dev/null || true)
  if grep -qiE 'without firewalling|does not support BPF/cgroup' <<<"$journal"; then
    reason="the journal says systemd is running \"WITHOUT firewalling\" (no BPF/cgroup support)"
  elif [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]; then
    reason="/sys/fs/cgroup is not the unified cgroup v2 hierarchy, which systemd's address filter needs"
  fi
  if [ -n "$reason" ]; then
    warn "this kernel/systemd cannot enforce IPAddressDeny=: $reason."
    warn "The viewer's address filter does NOTHING here. Install the nftables rules instead:"
    warn "    sudo $SRC/deploy/install.sh --firewall"
    return 1
  fi
  say "IPAddressDeny=/IPAddressAllow= are enforced by this kernel (cgroup v2 with BPF, no warning in the journal)."
  return 0
}

# -- packages ----------------------------------------------------------------------------------
apt_available() {
  # Installable from the configured archives: a real candidate version, not "(none)".
  # (Not `apt-cache ... | grep -q`: with pipefail, grep's early exit fails the pipe.)
  local policy
  policy=$(apt-cache policy "$1" 2>/dev/null || true)
  grep -qE '^ +Candidate: [^(]' <<<"$policy"
}

install_packages() {
  export DEBIAN_FRONTEND=noninteractive
  say "updating the package lists"
  apt-get update -q >/dev/null
  local packages=(python3 python3-venv age ca-certificates acl)
  [ "$firewall" = yes ] && packages+=(nftables)
  if apt_available python3-picamera2; then
    packages+=(python3-picamera2)
    say "python3-picamera2 is available: the Raspberry Pi camera stack will be installed."
  else
    say "picamera2 not available: use a USB/RTSP/file source (camera.source = \"/dev/video0\", an rtsp:// URL on your LAN, or a video file)."
  fi
  if apt_available python3-gpiozero; then
    packages+=(python3-gpiozero)
  else
    say "gpiozero not available: no doorbell button or chime (GPIO) on this machine."
  fi
  # gpiozero's pin library on Raspberry Pi OS; not in Debian, and not needed off a Pi.
  if apt_available python3-lgpio; then packages+=(python3-lgpio); fi
  say "installing: ${packages[*]}"
  apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
}

# -- users -------------------------------------------------------------------------------------
ensure_user() {
  local user=$1 comment=$2 group=${3:-$GROUP}
  if getent passwd "$user" >/dev/null; then
    usermod --gid "$group" --shell /usr/sbin/nologin "$user"
  else
    useradd --system --gid "$group" --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --comment "$comment" "$user"
    say "created user $user"
  fi
}

create_users() {
  getent group "$GROUP" >/dev/null || { groupadd --system "$GROUP"; say "created group $GROUP"; }
  ensure_user "$REC_USER" "Doorbell recorder (public keys only)"
  ensure_user "$VIEW_USER" "Doorbell viewer"
  # The replicator is not in group doorbell, which may write the clips and the audit log.
  getent group "$REPLICA_GROUP" >/dev/null || groupadd --system "$REPLICA_GROUP"
  ensure_user "$REPLICA_USER" "Doorbell replicator (reads ciphertext only)" "$REPLICA_GROUP"
  usermod --append --groups "$REPLICA_GROUP" "$VIEW_USER"  # reads its progress.json
  # Camera and GPIO device nodes belong to these groups on Raspberry Pi OS.
  local group
  for group in video gpio; do
    if getent group "$group" >/dev/null; then
      usermod --append --groups "$group" "$REC_USER"
    fi
  done
}

# -- the program -------------------------------------------------------------------------------
# The venv sees apt's packages (--system-site-packages), and apt's extension modules (picamera2's
# simplejpeg and the rest of the camera stack) are built against apt's numpy: 1.24 on Debian 12
# and Raspberry Pi OS Bookworm. A numpy 2.x in the venv (opencv-python-headless 4.12 and newer
# require it) would shadow apt's, and those modules then fail to import ("A module that was
# compiled using NumPy 1.x cannot be run in NumPy 2.x"). So pip is held to the system's own
# numpy, and with numpy 1.x to the OpenCV wheels that still run on it (before 4.12).
system_numpy() {
  # apt's numpy as the system Python sees it (-I: no user site packages, no PYTHON* variables).
  "$SYSTEM_PYTHON" -I -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true
}

write_pip_constraints() {
  local numpy_version
  numpy_version=$(system_numpy)
  {
    echo "# Written by deploy/install.sh: pip must never replace the system's (apt's) numpy,"
    echo "# which the apt camera stack is built against. Use it for any pip install here:"
    echo "#   $VENV/bin/python -m pip install --constraint $VENV/pip-constraints.txt ..."
    if [ -n "$numpy_version" ]; then
      echo "numpy==$numpy_version"
      case "$numpy_version" in
        1.*) echo "opencv-python-headless<4.12  # 4.12 and newer require numpy 2" ;;
      esac
    else
      echo "# (no numpy from apt here: pip chooses freely)"
    fi
  } > "$VENV/pip-constraints.txt"
}

numpy_file() {
  "$VENV/bin/python" -I -c 'import numpy; print(numpy.__file__)' 2>/dev/null || true
}

install_python_packages() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "creating the virtualenv $VENV (--system-site-packages)"
    rm -rf "$VENV"
    "$SYSTEM_PYTHON" -m venv --system-site-packages "$VENV"
  fi
  write_pip_constraints
  local numpy_version
  numpy_version=$(system_numpy)
  # An earlier install without these constraints may have put a numpy of its own in the venv.
  if [ -n "$numpy_version" ] && [[ "$(numpy_file)" == "$VENV"/* ]]; then
    say "removing the virtualenv's own numpy, which shadows the system's numpy $numpy_version"
    "$VENV/bin/python" -m pip uninstall -q -y --disable-pip-version-check numpy >/dev/null
  fi
  # Build from a clean copy of the sources, so the checkout gets no root-owned build files.
  local build
  build=$(mktemp -d)
  tar -C "$SRC" --exclude=__pycache__ -cf - pyproject.toml README.md doorbell camera storage web \
    config | tar -C "$build" -xf -
  say "installing the doorbell and its Python dependencies into $VENV"
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
      --root-user-action=ignore --constraint "$VENV/pip-constraints.txt" --upgrade "$build"; then
    rm -rf "$build"
    die "pip could not install the doorbell (see above)"
  fi
  rm -rf "$build"
  if [ -n "$numpy_version" ] && [[ "$(numpy_file)" == "$VENV"/* ]]; then
    die "the virtualenv still has a numpy of its own, which would break the system's camera modules"
  fi
  "$VENV/bin/doorbell" --help >/dev/null || die "$VENV/bin/doorbell does not run"
}

ours_on_path() { [ -f "$ADMIN_COMMAND" ] && grep -qF "$ADMIN_MARK" "$ADMIN_COMMAND"; }

install_admin_command() {
  if [ -e "$ADMIN_COMMAND" ] && ! ours_on_path; then
    warn "$ADMIN_COMMAND exists and is not the doorbell's: left alone (use $VENV/bin/doorbell as $VIEW_USER)."
    return 0
  fi
  install -d -m 0755 "$(dirname "$ADMIN_COMMAND")"
  install -m 0755 "$SRC/deploy/bin/doorbell" "$ADMIN_COMMAND"
}

install_program() {
  install -d -m 0755 "$PREFIX"
  install_python_packages
  install -m 0644 "$SRC/README.md" "$PREFIX/README.md"
  install_admin_command
}

# -- mDNS --------------------------------------------------------------------------------------
install_avahi_service() {
  if [ ! -x /usr/sbin/avahi-daemon ]; then
    say "avahi-daemon is not installed, so NAME.local may not resolve: use an address below, or apt-get install avahi-daemon and run me again."
    return 0
  fi
  install -d -m 0755 "$(dirname "$AVAHI_SERVICE")"
  install -m 0644 "$SRC/deploy/avahi/doorbell.service" "$AVAHI_SERVICE"
  say "the viewer is advertised on the home network by avahi ($AVAHI_SERVICE)"
}

# -- the data directory ------------------------------------------------------------------------
# Pre-creating the files both services write is what lets them share them: `doorbell init` and
# the audit log create new files readable by their owner's group only (0640).
CONFIG_TEMPLATE='# Doorbell settings for this device (written by deploy/install.sh; edit freely).
# Every key, its default and range: /opt/doorbell/venv/lib/python3*/site-packages/doorbell/config/default.toml
# Masks, zones, motion, recording and retention can be changed in the viewer (Settings); the
# recorder applies changes to this file within seconds (camera and notification changes restart
# it). A [viewer] change needs: sudo systemctl restart doorbell-viewer

[camera]
# "/dev/video0" (a USB webcam), an rtsp:// URL on your home network (needs
# install.sh --recorder-lan), or a video file.
source = "/dev/video0"

[viewer]
# HTTPS on every address of this device, answering the home network only.
bind = "0.0.0.0:8443"

# [doorbell]
# button_pin = 17   # BCM number of the GPIO the push button connects to ground
# chime_pin = 27    # BCM number of the GPIO driving the chime relay
'

prepare_home() {
  install -d -m 2770 -o "$VIEW_USER" -g "$GROUP" "$HOME_DIR"
  chown "$VIEW_USER:$GROUP" "$HOME_DIR"
  chmod 2770 "$HOME_DIR"
  # Files left by users and groups of an earlier install (uninstall keeps the data).
  find "$HOME_DIR" \( -nouser -o -nogroup \) -exec chown "$VIEW_USER:$GROUP" {} +
  chgrp -R "$GROUP" "$HOME_DIR"

  local dir
  for dir in identities tls; do  # private keys: the viewer's alone
    install -d -m 0700 -o "$VIEW_USER" -g "$GROUP" "$HOME_DIR/$dir"
    chown -R "$VIEW_USER" "$HOME_DIR/$dir"
    chmod u=rwx,go=,g-s "$HOME_DIR/$dir"  # (a plain 0700 keeps the inherited set-group-ID)
    find "$HOME_DIR/$dir" -mindepth 1 -type f -exec chmod go-rwx {} +
  done
  [ -f "$HOME_DIR/tls/viewer-cert.pem" ] && chmod 0644 "$HOME_DIR/tls/viewer-cert.pem"

  install -d -m 2770 -o "$VIEW_USER" -g "$GROUP" "$HOME_DIR/clips"
  find "$HOME_DIR/clips" -type d -exec chmod 2770 {} +
  find "$HOME_DIR/clips" -type f -exec chmod 0640 {} +

  local file
  for file in index.sqlite3 audit.jsonl; do  # appended to by both services
    if [ ! -e "$HOME_DIR/$file" ]; then
      install -m 0660 -o "$VIEW_USER" -g "$GROUP" /dev/null "$HOME_DIR/$file"
    fi
    chmod 0660 "$HOME_DIR/$file"
  done
  for file in index.sqlite3-wal index.sqlite3-shm; do
    [ -e "$HOME_DIR/$file" ] && chmod 0660 "$HOME_DIR/$file"
  done
  for file in audit.jsonl.head config.toml recipients.txt; do
    [ -e "$HOME_DIR/$file" ] && chmod g+r,g-w,o-w "$HOME_DIR/$file"
  done
  if [ ! -e "$HOME_DIR/config.toml" ]; then
    printf '%s' "$CONFIG_TEMPLATE" > "$HOME_DIR/config.toml"
    chown "$VIEW_USER:$GROUP" "$HOME_DIR/config.toml"
    chmod 0640 "$HOME_DIR/config.toml"
  fi
  if [ ! -e "$HOME_DIR/viewer.sqlite3" ]; then  # the viewer's alone (its -wal, -shm follow it)
    install -m 0600 -o "$VIEW_USER" -g "$GROUP" /dev/null "$HOME_DIR/viewer.sqlite3"
  fi
  for file in viewer.sqlite3 viewer.sqlite3-wal viewer.sqlite3-shm; do
    [ -e "$HOME_DIR/$file" ] && { chown "$VIEW_USER" "$HOME_DIR/$file"; chmod 0600 "$HOME_DIR/$file"; }
  done
  grant_replica_read
  return 0
}

# The replicator (doorbell-replica) reads what it copies and writes nothing: ACL entries for its
# group, r on files and r-x on directories, and default ACLs so that what the recorder and the
# viewer make later (day directories, sealed clips, a rewritten audit.jsonl.head or
# recipients.txt, a new member's identity) is readable too. A new file gets at most the group
# bits of the mode it is created with (the ACL mask): the clips' and identities' 0640 give it
# r, the viewer's 0600 files (viewer.sqlite3, tls/) nothing. Nothing becomes world-readable
# (the default ACLs' "other" entry is empty) and the recorder (group doorbell) gains nothing:
# identities/ stays closed to the owning group.
grant_replica_read() {
  local g=$REPLICA_GROUP file
  # Each mask (m::) is given, not recalculated: a file made under a default ACL keeps the
  # directory's group entry (rwx for clips/), and its mask is what limits the group doorbell to
  # the mode's group bits; a recalculated mask would widen it.
  setfacl -m "g:$g:rx,m::rwx,d:g:$g:rx,d:o::-" "$HOME_DIR"
  for file in config.toml recipients.txt audit.jsonl.head replica-target.json; do
    if [ -e "$HOME_DIR/$file" ]; then setfacl -m "g:$g:r,m::r" "$HOME_DIR/$file"; fi
  done
  setfacl -m "g:$g:r,m::rw" "$HOME_DIR/audit.jsonl"  # both services append to it
  find "$HOME_DIR/clips" -type d -exec setfacl -m "g:$g:rx,m::rwx,d:g:$g:rx,d:o::-" {} +
  find "$HOME_DIR/clips" -type f -exec setfacl -m "g:$g:r,m::r" {} +
  setfacl -m "g:$g:rx,m::rx,d:g:$g:r,d:g::-,d:o::-" "$HOME_DIR/identities"
  find "$HOME_DIR/identities" -type f -exec setfacl -m "g:$g:r,m::r" {} +
}

# The replicator's own directory (progress.json, retention.json). systemd's StateDirectory=
# would make it at the unit's first start; made here, the viewer's status page finds it.
prepare_replica_state() {
  install -d -m 0750 -o "$REPLICA_USER" -g "$REPLICA_GROUP" "$REPLICA_STATE"
}

# -- systemd -----------------------------------------------------------------------------------
install_units() {
  install -d -m 0755 "$UNIT_DIR"
  local unit
  for unit in "${UNITS[@]}" "$REPLICA_UNIT"; do
    install -m 0644 "$SRC/deploy/systemd/$unit" "$UNIT_DIR/$unit"
  done
  if [ "$recorder_lan" = yes ]; then
    install -d -m 0755 "$UNIT_DIR/doorbell-recorder.service.d"
    install -m 0644 "$SRC/deploy/systemd/recorder-lan.conf" \
      "$UNIT_DIR/doorbell-recorder.service.d/lan.conf"
    say "the recorder may reach the home network (drop-in doorbell-recorder.service.d/lan.conf)"
  fi
  if [ "$firewall" = yes ]; then
    install -d -m 0755 "$CONF_DIR"
    install -m 0644 "$SRC/deploy/nftables/doorbell.nft" "$CONF_DIR/doorbell.nft"
    install -m 0644 "$SRC/deploy/systemd/$FIREWALL_UNIT" "$UNIT_DIR/$FIREWALL_UNIT"
    nft --check --file "$CONF_DIR/doorbell.nft" || die "the nftables rules do not load here"
    say "nftables egress rules installed in $CONF_DIR/doorbell.nft"
  fi
  if [ "$use_systemd" = yes ]; then
    systemctl daemon-reload
    systemctl enable "${UNITS[@]}" "$REPLICA_UNIT" >/dev/null
    if [ "$firewall" = yes ]; then
      systemctl enable "$FIREWALL_UNIT" >/dev/null
      systemctl restart "$FIREWALL_UNIT"
    fi
  else
    # What `systemctl enable` would do, so the services start on the first boot.
    install -d -m 0755 "$UNIT_DIR/multi-user.target.wants"
    for unit in "${UNITS[@]}" "$REPLICA_UNIT"; do
      ln -sfn "$UNIT_DIR/$unit" "$UNIT_DIR/multi-user.target.wants/$unit"
    done
    if [ "$firewall" = yes ]; then
      ln -sfn "$UNIT_DIR/$FIREWALL_UNIT" "$UNIT_DIR/multi-user.target.wants/$FIREWALL_UNIT"
      for unit in "${UNITS[@]}"; do
        install -d -m 0755 "$UNIT_DIR/$unit.requires"
        ln -sfn "$UNIT_DIR/$FIREWALL_UNIT" "$UNIT_DIR/$unit.requires/$FIREWALL_UNIT"
      done
    fi
  fi
}

# The viewer's addresses: NAME.local (mDNS), then each home-network address of this device
# (hostname -I: all but loopback and IPv6 link-local; IPv6 in brackets, global IPv6 left out).
viewer_urls() {
  printf 'https://%s.local:%s/\n' "$(hostname -s 2>/dev/null || hostname)" "$VIEWER_PORT"
  local address
  for address in $(hostname -I 2>/dev/null || true); do
    case "$address" in
      [23]*:*) ;;  # a global IPv6 address: the viewer answers the home network only
      *:*) printf 'https://[%s]:%s/\n' "$address" "$VIEWER_PORT" ;;
      *) printf 'https://%s:%s/\n' "$address" "$VIEWER_PORT" ;;
    esac
  done
}

start_or_guide() {
  local urls
  urls=$(viewer_urls | sed 's/^/    /')
  if [ "$use_systemd" = yes ]; then
    systemctl restart "${UNITS[@]}"
    systemctl try-restart "$REPLICA_UNIT"  # an upgrade; unpaired, it does not start at all
    say "started: ${UNITS[*]} (journalctl -u doorbell-recorder -u doorbell-viewer -f)"
  else
    say "the services start at the next boot."
  fi
  if [ -f "$HOME_DIR/recipients.txt" ]; then
    say "the viewer, on your home network:"
    printf '%s\n' "$urls"
    return 0
  fi
  cat <<EOF

Next: create the household's first member, in a browser on your home network. Open

$urls

(the .local name where your network resolves it, else an address) and type the one-time
set-up code the viewer printed to its log:

    sudo journalctl -u doorbell-viewer | grep -A 2 'set-up code'

The code works once, for 30 minutes (restart doorbell-viewer for a new one). The page asks
for your name and a passphrase, then shows a RECOVERY KEY once (save or print it: with it,
age alone decrypts every clip) and the certificate fingerprint to compare with your browser's.
The recorder waits until then and starts recording as soon as set-up is done.

Or, from this terminal ($ADMIN_COMMAND runs it as $VIEW_USER, the user that owns the keys):

    sudo doorbell init --user YOUR-NAME

EOF
}

do_install() {
  [ "$(id -u)" -eq 0 ] || die "run me as root (sudo $0)"
  # shellcheck source=/dev/null
  [ -r /etc/os-release ] && . /etc/os-release
  case " ${ID:-} ${ID_LIKE:-} " in
    *" debian "*|*" raspbian "*) ;;
    *) die "this installer is for Debian and Raspberry Pi OS (found ${PRETTY_NAME:-an unknown system})" ;;
  esac
  if [ -n "${VERSION_ID:-}" ] && [ "${VERSION_ID%%.*}" -lt 12 ] 2>/dev/null; then
    die "Debian/Raspberry Pi OS 12 (Bookworm) or newer is needed (found ${PRETTY_NAME:-?})"
  fi
  if [ ! -f "$SRC/pyproject.toml" ] || [ ! -d "$SRC/doorbell" ]; then
    die "$SRC is not a doorbell checkout"
  fi
  decide_systemd
  install_packages
  create_users
  install_program
  prepare_home
  prepare_replica_state
  install_units
  install_avahi_service
  if [ "$use_systemd" = yes ]; then
    check_ip_filter || true
  fi
  say "installed: $VENV/bin/doorbell, units in $UNIT_DIR, data in $HOME_DIR"
  start_or_guide
}

# -- uninstall ---------------------------------------------------------------------------------
do_uninstall() {
  [ "$(id -u)" -eq 0 ] || die "run me as root (sudo $0 --uninstall)"
  decide_systemd
  local unit
  if [ "$use_systemd" = yes ]; then
    systemctl disable --now "${UNITS[@]}" "$REPLICA_UNIT" "$FIREWALL_UNIT" >/dev/null 2>&1 || true
  fi
  for unit in "${UNITS[@]}" "$REPLICA_UNIT" "$FIREWALL_UNIT"; do
    rm -f "$UNIT_DIR/$unit" "$UNIT_DIR/multi-user.target.wants/$unit"
    rm -rf "$UNIT_DIR/$unit.d" "$UNIT_DIR/$unit.requires"
  done
  [ "$use_systemd" = yes ] && systemctl daemon-reload
  if command -v nft >/dev/null && [ "$use_systemd" = yes ]; then
    nft delete table inet doorbell 2>/dev/null || true
  fi
  rm -rf "$CONF_DIR" "$PREFIX" "$REPLICA_STATE"
  # The kept data loses the replicator's ACL entries (they would name a deleted group's id);
  # -n keeps each mask, so no permission widens.
  if [ -d "$HOME_DIR" ] && command -v setfacl >/dev/null && getent group "$REPLICA_GROUP" >/dev/null; then
    find "$HOME_DIR" -exec setfacl -n -x "g:$REPLICA_GROUP" {} +
    find "$HOME_DIR" -type d -exec setfacl -n -x "d:g:$REPLICA_GROUP" {} +
  fi
  if ours_on_path; then rm -f "$ADMIN_COMMAND"; fi
  rm -f "$AVAHI_SERVICE"
  local user group
  for user in "$REC_USER" "$VIEW_USER" "$REPLICA_USER"; do
    if getent passwd "$user" >/dev/null; then userdel "$user"; say "removed user $user"; fi
  done
  for group in "$GROUP" "$REPLICA_GROUP"; do
    if getent group "$group" >/dev/null; then groupdel "$group"; fi
  done
  if [ "$purge" = yes ]; then
    rm -rf "$HOME_DIR"
    say "removed $HOME_DIR: all footage, keys and the audit log are gone."
  elif [ -d "$HOME_DIR" ]; then
    say "kept $HOME_DIR (footage, keys, audit log). Delete it with: $0 --uninstall --purge"
  fi
  say "uninstalled."
}

case "$action" in
  install) do_install ;;
  uninstall) do_uninstall ;;
  check-ip-filter) check_ip_filter ;;
  python-only) install_python_packages ;;
esac
