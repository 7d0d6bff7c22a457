"""A real RTSP camera for the tests: GStreamer's RTSP server (Debian's gst-rtsp-server) on
loopback, serving the H.264 of a real video file as it is (no re-encoding), in real time.

    server = RtspServer(looped_h264(video_file("bikes.mp4"), tmp_path, repeats=6),
                        user="door", password="s3cret")
    server.start()          # a free port on 127.0.0.1; start() again later reuses it
    server.url()            # rtsp://door:s3cret@127.0.0.1:PORT/door
    server.stop()           # the camera vanishes: clients see their stream end
    server.playing_s        # time.monotonic() when each client's stream began (file start)

The server runs in its own process under Debian's /usr/bin/python3 (python3-gi and
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good for qtdemux and rtph264pay), as this
module run as a script. Each client gets the file from its start. With a user name, the server
refuses clients without that user's password (RTSP Basic authentication).
"""

import subprocess
import sys
import threading
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
MOUNT = "/door"


def missing_gstreamer() -> str | None:
    """Why the RTSP server cannot run here (None: it can)."""
    probe = ("import gi; gi.require_version('Gst', '1.0'); "
             "gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('qtdemux') and Gst.ElementFactory.find('rtph264pay')")
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30,
                                check=False)
    except OSError:
        return f"{SYSTEM_PYTHON} is not there"
    if result.returncode != 0:
        return ("GStreamer's RTSP server is not installed (apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good)")
    return None


def looped_h264(video: Path, directory: Path, repeats: int) -> Path:
    """`video`'s H.264 packets `repeats` times over in one MP4 (remuxed, not re-encoded), so
    the camera keeps streaming for `repeats` times the video's length."""
    import av

    out_path = directory / f"{video.stem}-x{repeats}.mp4"
    with av.open(str(video)) as source:
        stream = source.streams.video[0]
        packets = [p for p in source.demux(stream) if p.size]
        span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        with av.open(str(out_path), "w") as out:
            copied = out.add_stream_from_template(stream)
            for repeat in range(repeats):
                for packet in packets:
                    packet.pts += span if repeat else 0
                    packet.dts += span if repeat else 0
                    packet.stream = copied
                    out.mux(packet)
    return out_path


class RtspServer:
    def __init__(self, video: Path, user: str | None = None, password: str | None = None):
        self.video = video
        self.user, self.password = user, password
        self.port = 0
        self.playing_s: list[float] = []
        self._process: subprocess.Popen | None = None

    def url(self, credentials: bool = True) -> str:
        login = f"{self.user}:{self.password}@" if credentials and self.user else ""
        return f"rtsp://{login}127.0.0.1:{self.port}{MOUNT}"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [SYSTEM_PYTHON, __file__, str(self.port), str(self.video), self.user or "",
             self.password or ""], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True)
        line = self._process.stdout.readline()  # "ready PORT" once it listens
        if not line.startswith("ready "):
            self._process.kill()
            raise RuntimeError(f"the RTSP server did not start: {self._process.stderr.read()}")
        self.port = int(line.split()[1])
        threading.Thread(target=self._follow, args=(self._process,), daemon=True).start()

    def _follow(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            if line.startswith("playing "):
                self.playing_s.append(float(line.split()[1]))

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None


def serve(port: str, video: str, user: str, password: str) -> None:
    """The server itself (under /usr/bin/python3): print "ready PORT", then serve forever."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # config-interval=-1: SPS/PPS before every keyframe, as IP cameras send them
    factory.set_launch(f'( filesrc location="{video}" ! qtdemux ! '
                       'rtph264pay name=pay0 pt=96 config-interval=-1 )')
    if user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "camera-user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("camera-user", "media.factory.access", True)
        permissions.add_permission_for_role("camera-user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    def media_configured(_factory, media):
        def new_state(_media, state):
            if state == Gst.State.PLAYING:
                print("playing", time.monotonic(), flush=True)  # the file starts now

        media.connect("new-state", new_state)

    factory.connect("media-configure", media_configured)
    server.get_mount_points().add_factory(MOUNT, factory)
    server.attach(None)
    print("ready", server.get_bound_port(), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    serve(*sys.argv[1:5])
