"""``memstream serve --ray N`` as users start it (issue 20): a real process serving HTTP itself and
reaching two StreamReplica replicas through Ray Serve handles (``--ray-ingress process``, the
default; ``test_serve_ray.py`` covers Serve's proxy and the frontend deployment): streams stick to
their replicas, the official openai client works, Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.streaming.videomem.util import jpeg as _jpeg

pytestmark = [pytest.mark.network, pytest.mark.timeout(400)]



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def test_serve_ray_from_the_command_line_routes_streams_and_stops_on_ctrl_c(tiny_llava_dir, tmp_path):
    pytest.importorskip("ray")
    import httpx
    from openai import OpenAI

    port, log = _free_port(), tmp_path / "serve.log"
    command = [sys.executable, "-m", "memstream.streaming.cli", "serve", "--model", str(tiny_llava_dir), "--device", "cpu",
               "--dtype", "float32", "--window-frames", "4", "--topk", "3", "--max-blocks", "64",
               "--store", str(tmp_path / "store"), "--port", str(port), "--ray", "2", "--replica-cpus", "0.5",
               "--torch-threads", "1"]
    with open(log, "wb") as sink:  # a file, not a pipe: Ray's logs would fill a pipe nobody reads
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, f"the server exited: {_log_tail(log)}"
            assert time.monotonic() < deadline, f"the server did not come up: {_log_tail(log)}"
            try:
                if httpx.get(f"{base}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert "this process" in _log_tail(log)  # the banner names the ingress
        names = ["a", "b", "c"]
        with httpx.Client(timeout=60) as client:
            for name in names:
                assert client.post(f"{base}/v1/streams", json={"stream_id": name}).status_code == 200
            for i in range(4):  # interleaved: each answer covers exactly its own stream's frames
                for k, name in enumerate(names):
                    r = client.post(f"{base}/v1/streams/{name}/frames", params={"timestamp_s": 100 * k + i}, content=_jpeg(i))
                    assert r.json() == {"frames_seen": i + 1}, r.text
            assert client.get(f"{base}/v1/streams/nope").status_code == 404
            openai = OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
            for k, name in enumerate(names):
                reply = openai.chat.completions.create(model=str(tiny_llava_dir), max_tokens=2,
                                                       messages=[{"role": "user", "content": "What moved?"}],
                                                       extra_body={"stream_id": name})
                seen = reply.model_extra["memstream"]
                assert (seen["frames_seen"], seen["covered_until_s"]) == (4, 100.0 * k + 3)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            code = server.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    assert code == 0, _log_tail(log)
    assert "Traceback" not in _log_tail(log)
