#!/usr/bin/env bash
# Debian packages the tests use beyond pip: GStreamer's RTSP server (a local RTSP stream for the
# network-source tests). Installs them when missing and apt is usable; otherwise says so and the
# RTSP test skips with this reason. Never fails the test command.
set -u
packages="gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good python3-gi"
if /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" 2>/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages; } >/dev/null 2>&1 \
    || echo "tests/system_deps.sh: could not install $packages; the RTSP test will skip" >&2
else
  echo "tests/system_deps.sh: install $packages (Debian/Ubuntu) to run the RTSP test" >&2
fi
exit 0
