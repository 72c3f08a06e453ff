"""Test harness: the real `herald` binary, the official `pusher` server SDK and raw WebSockets.

Each test class derived from `HeraldTestCase` starts its own `herald serve` with a temporary
config (SQLite in a temporary directory) and kills it when the class is done, also when a test
or the start-up fails. Every wait has a timeout; to show that something did *not* arrive, tests
use an ordering barrier (a later event that must arrive) instead of a sleep.
"""

import base64
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import pusher
from pusher.http import POST, Request
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def _default_bin():
    target = os.environ.get("HERALD_TARGET_DIR")
    if target:
        return os.path.join(os.path.abspath(target), "debug", "herald")
    return os.path.join(REPO, "target", "debug", "herald")


HERALD_BIN = os.path.abspath(os.environ.get("HERALD_BIN") or _default_bin())

#: Default time any single wait may take, in seconds.
TIMEOUT = 5.0
#: Time the server has to print its banner.
START_TIMEOUT = 10.0

JWT_SECRET = "python-suite-jwt-secret"
#: The end-to-end encryption master key (32 bytes, base64), given to the SDK and to herald.
ENCRYPTION_MASTER_KEY_BASE64 = base64.b64encode(b"herald-python-suite-master-key!!").decode()

#: The apps of the temporary config. The Python SDK only accepts numeric app ids.
APPS = {
    "main": {"id": "424242", "key": "py-main-key", "secret": "py-main-secret", "client_events": True},
    "other": {"id": "424243", "key": "py-other-key", "secret": "py-other-secret", "client_events": True},
    "disabled": {"id": "424244", "key": "py-disabled-key", "secret": "py-disabled-secret", "enabled": False},
}

WS_RE = re.compile(r"WebSocket\s+ws://127\.0\.0\.1:(\d+)/app/")
ECHO_RE = re.compile(r"Laravel Echo:")


def unique(prefix):
    """A channel or user name no other test uses."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def config_toml(directory):
    """The temporary config, the equivalent of `configToml` in tests/node/lib/harness.mjs."""
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        "port = 0",
        "shutdown_grace_secs = 1",
        "",
        "[admin]",
        "port = 0",
        "",
        "[database]",
        "url = %s" % _toml("sqlite://" + os.path.join(directory, "herald.db")),
        "",
        "[auth]",
        "jwt_secret = %s" % _toml(JWT_SECRET),
        "encryption_master_key_base64 = %s" % _toml(ENCRYPTION_MASTER_KEY_BASE64),
        "",
    ]
    for app in APPS.values():
        lines.append("[[apps]]")
        lines.extend("%s = %s" % (k, _toml(v)) for k, v in app.items())
        lines.append("")
    return "\n".join(lines)


def wait_until(predicate, timeout=TIMEOUT, label="condition", interval=0.02):
    """Polls `predicate` until it returns a truthy value (returned), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s (last: %r)" % (timeout, label, last))
        time.sleep(interval)


class Server:
    """A running `herald serve` process."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="herald-python-")
        self.config_path = os.path.join(self.dir, "herald.toml")
        with open(self.config_path, "w") as f:
            f.write(config_toml(self.dir))
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.process = None
        self.port = None
        self._stdout = []

    def start(self):
        if not os.path.exists(HERALD_BIN):
            raise RuntimeError(
                "herald binary not found at %s: build it with `cargo build` at the repository root, "
                "or set HERALD_BIN" % HERALD_BIN
            )
        env = dict(os.environ)
        env["HERALD_LOG"] = os.environ.get("HERALD_LOG", "warn")
        self._stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen(
            [HERALD_BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--config", self.config_path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            start_new_session=True,
        )
        lines = queue.Queue()

        def pump():
            # Keeps reading stdout for the life of the process, so the pipe never fills.
            for raw in self.process.stdout:
                line = raw.decode("utf-8", "replace")
                self._stdout.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        port = None
        echo = False
        while port is None or not echo:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError("timed out after %.0f s waiting for the herald banner:\n%s" % (START_TIMEOUT, self.output()))
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.process.wait(timeout=TIMEOUT)
                raise RuntimeError(
                    "herald exited (code %s) before it was ready:\n%s" % (self.process.returncode, self.output())
                )
            match = WS_RE.search(line)
            if match:
                port = int(match.group(1))
            if ECHO_RE.search(line):
                echo = True
        self.port = port
        return self

    def output(self):
        try:
            with open(self.stderr_path, "rb") as f:
                err = f.read()[-20000:].decode("utf-8", "replace")
        except OSError:
            err = ""
        return "stdout:\n%s\nstderr:\n%s" % ("".join(self._stdout), err)

    def stop(self):
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- clients -------------------------------------------------------------------------------

    def sdk(self, app="main", **overrides):
        """An instance of the official SDK for `app` (a name in APPS, or a dict)."""
        config = dict(APPS[app] if isinstance(app, str) else app)
        options = dict(
            app_id=config["id"],
            key=config["key"],
            secret=config["secret"],
            ssl=False,
            host="127.0.0.1",
            port=self.port,
            timeout=TIMEOUT,
            encryption_master_key_base64=ENCRYPTION_MASTER_KEY_BASE64,
        )
        options.update(overrides)
        return pusher.Pusher(**options)

    def socket(self, key=None):
        """A raw Pusher protocol connection (connection_established already read)."""
        return Socket(self, key or APPS["main"]["key"])


def signed_post(sdk, path, body):
    """A POST the SDK signs but whose body the SDK has no method for (`path` after /apps/{id})."""
    client = sdk._pusher_client
    return client.http.send_request(Request(client, POST, "/apps/%s%s" % (client.app_id, path), body))


class Socket:
    """A raw WebSocket speaking the Pusher protocol: frames are parsed JSON objects."""

    def __init__(self, server, key):
        url = "ws://127.0.0.1:%d/app/%s?protocol=7&client=py&version=1.0" % (server.port, key)
        self.ws = connect(url, open_timeout=TIMEOUT, close_timeout=1)
        self.pending = []
        self.close_code = None
        established = self.expect("pusher:connection_established")
        self.established = json.loads(established["data"])
        self.socket_id = self.established["socket_id"]

    def send(self, event, data):
        self.ws.send(json.dumps({"event": event, "data": data}))

    def _next(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        frame = json.loads(self.ws.recv(timeout=remaining))
        return frame

    def expect(self, event, channel=None, timeout=TIMEOUT, match=None):
        """The first frame with `event` (a name, or a tuple of names), on `channel` if given, for
        which `match(frame)` holds; frames skipped on the way are kept for later calls. Fails
        after `timeout` seconds."""
        events = event if isinstance(event, tuple) else (event,)

        def wanted(frame):
            return (
                frame.get("event") in events
                and (channel is None or frame.get("channel") == channel)
                and (match is None or match(frame))
            )

        for index, frame in enumerate(self.pending):
            if wanted(frame):
                return self.pending.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self._next(deadline)
            except TimeoutError:
                raise AssertionError(
                    "timed out after %.1f s waiting for %s on %s; other frames: %s"
                    % (timeout, event, channel, json.dumps(self.pending)[:2000])
                ) from None
            except ConnectionClosed as closed:
                raise AssertionError(
                    "socket closed (%s) while waiting for %s; other frames: %s"
                    % (closed, event, json.dumps(self.pending)[:2000])
                ) from None
            if wanted(frame):
                return frame
            self.pending.append(frame)

    def frames(self, event=None, channel=None):
        """Frames received so far and not consumed by `expect`."""
        return [
            f
            for f in self.pending
            if (event is None or f.get("event") == event) and (channel is None or f.get("channel") == channel)
        ]

    def subscribe(self, channel, auth=None, channel_data=None):
        """Sends pusher:subscribe; returns the subscription_succeeded frame, or fails with the
        subscription_error."""
        self.send_subscribe(channel, auth, channel_data)
        frame = self.expect(("pusher_internal:subscription_succeeded", "pusher:subscription_error"), channel)
        if frame["event"] != "pusher_internal:subscription_succeeded":
            raise AssertionError("subscription to %s refused: %s" % (channel, frame.get("data")))
        return frame

    def send_subscribe(self, channel, auth=None, channel_data=None):
        data = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send("pusher:subscribe", data)

    def closed(self, timeout=TIMEOUT):
        """Waits until the server closes the socket; returns (code, reason). Frames received
        meanwhile are kept."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.pending.append(self._next(deadline))
            except TimeoutError:
                raise AssertionError("timed out after %.1f s waiting for the socket to close" % timeout) from None
            except ConnectionClosed as closed:
                frame = closed.rcvd
                return (frame.code, frame.reason) if frame is not None else (None, None)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


class HeraldTestCase(unittest.TestCase):
    """Starts one herald for the class; closes the sockets a test opened after it."""

    server = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        server = Server()
        # Registered before the start, so that a failed start still kills and cleans up.
        cls.addClassCleanup(server.stop)
        cls.server = server.start()
        cls.sdk = server.sdk()

    def socket(self, key=None):
        socket = self.server.socket(key)
        self.addCleanup(socket.close)
        return socket

    def subscribed(self, channel, socket=None):
        """A socket subscribed to `channel`, authorised by the SDK when the channel needs it."""
        socket = socket or self.socket()
        if channel.startswith("presence-"):
            auth = self.sdk.authenticate(channel, socket.socket_id, {"user_id": unique("u")})
            socket.subscribe(channel, auth["auth"], auth["channel_data"])
        elif channel.startswith("private-"):
            socket.subscribe(channel, self.sdk.authenticate(channel, socket.socket_id)["auth"])
        else:
            socket.subscribe(channel)
        return socket

    def barrier(self, socket, channel):
        """Triggers a sentinel on `channel` (which `socket` is subscribed to) and waits for it:
        every event published to that socket before has been delivered by then."""
        token = uuid.uuid4().hex
        self.sdk.trigger(channel, "sentinel", {"token": token})
        socket.expect("sentinel", channel, match=lambda f: json.loads(f["data"]).get("token") == token)
