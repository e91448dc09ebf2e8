"""`make lab` serves JupyterLab on 127.0.0.1 with token authentication, opening the start page."""

import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_make_lab_serves_localhost_with_a_token(tmp_path):
    port = _free_port()
    env = dict(os.environ, BROWSER="true", JUPYTER_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"LAB_PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = queue.Queue()

    def pump():  # read in a thread so a silent server cannot block the test past its deadline
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url, deadline, seen = None, time.monotonic() + 120, []
        pattern = re.compile(rf"http://127\.0\.0\.1:{port}/lab[^\s?]*\?token=(\w+)")
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            match = pattern.search(line)
            if match:
                url = match.group(0)
        assert url, "make lab printed no tokenized 127.0.0.1 address:\n" + "".join(seen[-20:])
        token = url.rsplit("=", 1)[1]
        base = f"http://127.0.0.1:{port}"
        # Jupyter prints its address a moment before the socket accepts: wait until it answers.
        while time.monotonic() < deadline:
            try:
                _status(f"{base}/api/status")
                break
            except urllib.error.URLError:
                time.sleep(0.2)
        assert _status(f"{base}/api/contents") == 403, "the server answers without a token"
        assert _status(f"{base}/api/contents?token={token}") == 200
        assert _status(f"{base}/api/contents/notebooks/00_start_here.ipynb?token={token}") == 200
        with urllib.request.urlopen(f"{base}/?token={token}", timeout=5) as response:
            assert response.url.split("?")[0].endswith("/lab/tree/notebooks/00_start_here.ipynb")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_setup_is_up_to_date_after_a_run():
    """The stamp keyed on the lock makes a second `make setup` a no-op (`make -q` exits 0)."""
    result = subprocess.run(["make", "-q", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, "make setup would run again although the lock is unchanged"
