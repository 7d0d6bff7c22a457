"""A camera URL's password never reaches a log line or an error message."""

import logging
import types

import pytest

from doorbell.camera.capture import CaptureError, check_lan_url, redact_url
from doorbell.commands import record


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:hunter2@192.168.1.20:554/stream1", "rtsp://***@192.168.1.20:554/stream1"),
    ("rtsp://admin@cam.lan/h264", "rtsp://***@cam.lan/h264"),
    ("rtsp://cam.lan/h264", "rtsp://cam.lan/h264"),
    ("/home/pi/doorbell", "/home/pi/doorbell"),
])
def test_redact_url_keeps_the_host_and_drops_the_credentials(url, shown):
    assert redact_url(url) == shown


def test_a_url_without_a_host_is_refused_without_its_password():
    with pytest.raises(CaptureError) as caught:
        check_lan_url("rtsp://admin:hunter2@/stream1", ["192.168.0.0/16"])
    assert "hunter2" not in str(caught.value) and "has no host" in str(caught.value)


def test_the_restart_line_does_not_log_the_camera_password(monkeypatch, caplog):
    args = types.SimpleNamespace(home=None, source="rtsp://admin:hunter2@192.168.1.20/s",
                                 until_eof=False)
    monkeypatch.setattr(record.os, "execv", lambda *a: None)  # stay in this process
    caplog.set_level(logging.INFO)
    record.restart(args)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("restart")]
    assert "hunter2" not in line and "rtsp://***@192.168.1.20/s" in line
