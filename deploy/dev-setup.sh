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
packages=(age chromium python3-venv python3-dev libcap-dev gcc mosquitto openssh-server
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
echo "Development environment ready: .venv/bin/python -m pytest"
