"""A local RTSP server for the tests: GStreamer's RTSP server streaming a moving test pattern.

Runs under the system Python (``/usr/bin/python3``), where Debian's ``python3-gi`` lives; the test
suite starts it as a subprocess bound to 127.0.0.1 and stops it. Installed by tests/system_deps.sh.

    /usr/bin/python3 tests/streaming/rtsp_server.py PORT     # serves rtsp://127.0.0.1:PORT/live
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=64,height=48,framerate=30/1"
    " ! jpegenc ! rtpjpegpay name=pay0 pt=26 )"
)


def main() -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(sys.argv[1])
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/live", factory)
    server.attach(None)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
