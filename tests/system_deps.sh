#!/usr/bin/env bash
# Debian packages the tests use beyond pip, installed when missing and apt is usable; otherwise
# says so. Never fails the test command.
#  - libusb-1.0-0: open3d's shared library links it (the 3D memory's tests need open3d).
#  - GStreamer's RTSP server: a local RTSP stream for the network-source tests (they skip without it).
#  - Mesa's EGL (libegl1, libegl-mesa0, libgl1-mesa-dri): MiniWorld and Memory Maze (MuJoCo with
#    MUJOCO_GL=egl) render headless through it (the navigation tests that run them need it).
set -u
need=""
if ! ldconfig -p 2>/dev/null | grep -q "libusb-1.0.so.0"; then
  need="libusb-1.0-0"
fi
if ! ldconfig -p 2>/dev/null | grep -q "libEGL_mesa.so.0"; then
  need="$need libegl1 libegl-mesa0 libgl1-mesa-dri"
fi
rtsp="gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good python3-gi"
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" 2>/dev/null; then
  need="$need $rtsp"
fi
[ -z "${need// /}" ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need; } >/dev/null 2>&1 \
    || echo "tests/system_deps.sh: could not install $need (open3d needs libusb-1.0-0; MiniWorld and Memory Maze Mesa's EGL; the RTSP test skips without GStreamer)" >&2
else
  echo "tests/system_deps.sh: install $need (Debian/Ubuntu): open3d needs libusb-1.0-0, MiniWorld and Memory Maze Mesa's EGL, the RTSP test GStreamer" >&2
fi
exit 0
