#!/usr/bin/env bash
# Set up a development/test environment on Debian or Raspberry Pi OS: the Debian packages the
# tests use (the stock `age` CLI, Chromium for browser tests) and a virtualenv in .venv with the
# project and its dev extras. Idempotent: run it again after pulling.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# libcap-dev and gcc: picamera2 (tested here with libcamera doubles) builds python-prctl.
# debootstrap .. systemd: the deployment tests (a fresh Debian root, the hardened units, the
# egress test in a network namespace, the nftables rules); mosquitto: the MQTT tests;
# python3-numpy and python3-bottleneck (apt's numpy 1.x and a module built against it): the
# Pi's numpy clash, reproduced by tests/deploy/test_numpy_clash.py.
# python3-gi .. plugins-good: the RTSP camera tests (GStreamer's RTSP server, tests/camera/rtsp_server.py).
# avahi-daemon: tests/deploy/test_avahi.py loads deploy/avahi/doorbell.service into the real one;
# acl: getfacl/setfacl, as install.sh uses them for the replicator's read-only access.
packages=(age chromium python3-venv python3-dev libcap-dev gcc mosquitto openssh-server avahi-daemon acl
          debootstrap shellcheck nftables systemd-container strace iproute2 systemd
          python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          python3-numpy python3-bottleneck)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

# The tests that run a stock `age` on post-quantum keys need age 1.3.0 or later; Debian 12
# ships 1.1.1. Fetch Debian unstable's package (a static Go binary) into .venv/age-pq with a
# private apt state (the system's sources are not touched) and unpack it there. Best effort:
# without it those tests skip and say why (tests/age_cli.py).
if [ ! -x .venv/age-pq/usr/bin/age ]; then
  state="$(mktemp -d)"
  mkdir -p "$state/lists/partial" "$state/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" > "$state/sources.list"
  apt_opts=(-o Dir::Etc::SourceList="$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o Dir::State::Lists="$state/lists" -o Dir::Cache::Archives="$state/archives"
            -o Debug::NoLocking=1)
  if apt-get "${apt_opts[@]}" update -q >/dev/null 2>&1 &&
     (cd "$state" && apt-get "${apt_opts[@]}" download age >/dev/null 2>&1); then
    dpkg-deb -x "$state"/age_*.deb .venv/age-pq &&
      echo "age for post-quantum tests: $(.venv/age-pq/usr/bin/age --version)"
  else
    echo "could not fetch age 1.3+ from Debian unstable: its tests will skip"
  fi
  rm -rf "$state"
fi
echo "Development environment ready: .venv/bin/python -m pytest"
