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
# - Mesa's Vulkan lavapipe >= 23 (MIKASA-Robo / ManiSkill3 render through SAPIEN's Vulkan renderer on the
#   CPU; Debian 12's Mesa 22.3.6 lacks VK_KHR_external_semaphore_fd and SAPIEN finds no rendering
#   device). Debian 12 gets Mesa 25 from bookworm-backports: this adds that suite to apt's sources
#   (/etc/apt/sources.list.d/bookworm-backports.sources) and upgrades only mesa-vulkan-drivers, libdrm2
#   and libdrm-amdgpu1 from it (OpenGL/EGL stay Debian 12's). Nothing happens where Mesa >= 23 is installed.
mesa_vulkan_ok() {
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null) || return 1
  [ -n "$v" ] && dpkg --compare-versions "$v" ge 23
}
if command -v dpkg-query >/dev/null && ! mesa_vulkan_ok; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] && grep -q "bookworm" /etc/os-release 2>/dev/null; then
    src=/etc/apt/sources.list.d/bookworm-backports.sources
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$src"
      echo "tests/system_deps.sh: added Debian's bookworm-backports suite ($src)" >&2
    fi
    if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers/bookworm-backports \
         libdrm2/bookworm-backports libdrm-amdgpu1/bookworm-backports; } >/dev/null 2>&1; then
      echo "tests/system_deps.sh: upgraded mesa-vulkan-drivers, libdrm2, libdrm-amdgpu1 from bookworm-backports (Mesa $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)) for ManiSkill3's renderer" >&2
    else
      echo "tests/system_deps.sh: could not install Mesa's Vulkan lavapipe from bookworm-backports (the MIKASA-Robo tests skip without a Vulkan device)" >&2
    fi
  else
    echo "tests/system_deps.sh: ManiSkill3 renders through Vulkan: install Mesa >= 23's lavapipe (Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers libdrm2 libdrm-amdgpu1)" >&2
  fi
fi
[ -z "${need// /}" ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need; } >/dev/null 2>&1 \
    || echo "tests/system_deps.sh: could not install $need (open3d needs libusb-1.0-0; MiniWorld and Memory Maze Mesa's EGL; the RTSP test skips without GStreamer)" >&2
else
  echo "tests/system_deps.sh: install $need (Debian/Ubuntu): open3d needs libusb-1.0-0, MiniWorld and Memory Maze Mesa's EGL, the RTSP test GStreamer" >&2
fi
exit 0
