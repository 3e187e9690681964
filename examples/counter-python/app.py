"""Granary's Counter example in Python (3.11, standard library only).

It hosts the actor type Counter over the actor callback protocol and keeps each
counter's value in actor state through the sidecar's HTTP API, so a count
survives deactivation, restarts and moves between silos.

Pub/sub: the method announce publishes the actor's count to the topic
counter-events of the pub/sub "pubsub"; the app subscribes to that topic
(GET /dapr/subscribe) and keeps the last 1,000 events it received, which
GET /events lists.

Environment: APP_HOST (default 127.0.0.1) and APP_PORT (3000) to listen on;
DAPR_HTTP_PORT (3500) or GRANARY_URL (the sidecar's full base URL);
DAPR_API_TOKEN, sent to the sidecar; APP_API_TOKEN, required from callers.
"""

import hmac
import json
import math
import os
import re
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20  # bytes accepted in a request or a sidecar answer
# The largest integer every JSON implementation keeps exactly (2^53-1);
# counts and increments stay within ±MAX_SAFE_INT.
MAX_SAFE_INT = 2**53 - 1
ACTOR_CONFIG = {"entities": ["Counter"], "actorIdleTimeout": "1h",
                "drainOngoingCallTimeout": "30s", "drainRebalancedActors": True}
# Pub/sub names: where announce publishes, and what the app subscribes to.
PUBSUB, EVENTS_TOPIC, MAX_EVENTS = "pubsub", "counter-events", 1000
SUBSCRIPTIONS = [{"pubsubname": PUBSUB, "topic": EVENTS_TOPIC, "route": "/events"}]


def port_from_env(name, default):
    value = os.environ.get(name) or default
    if not re.fullmatch(r"[0-9]{1,5}", value) or int(value) > 65535:
        sys.exit(f"counter-python: {name} {value!r} is not a port number")
    return int(value)


HOST = os.environ.get("APP_HOST") or "127.0.0.1"
PORT = port_from_env("APP_PORT", "3000")
SIDECAR = (os.environ.get("GRANARY_URL")
           or f"http://127.0.0.1:{port_from_env('DAPR_HTTP_PORT', '3500')}").rstrip("/")
if not re.match(r"https?://[^/]", SIDECAR):
    sys.exit(f"counter-python: GRANARY_URL {SIDECAR!r} is not an http(s) URL")
DAPR_TOKEN = os.environ.get("DAPR_API_TOKEN", "")
APP_TOKEN = os.environ.get("APP_API_TOKEN", "")

# The sidecar is reached directly, never through an HTTP proxy from the environment.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
counts = {}  # the count of each actor read or written so far
counts_lock = threading.Lock()
events = deque(maxlen=MAX_EVENTS)  # the data of the latest events received, oldest first
events_lock = threading.Lock()


class HTTPError(Exception):
    """An error with the status it answers with; other exceptions answer 500."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def safe_int(value):
    """The integer a decoded JSON number holds, if it is a whole number within
    ±MAX_SAFE_INT (so 3 and 3.0 are the same, as in JavaScript), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not abs(value) <= MAX_SAFE_INT or value != int(value):
        return None
    return int(value)


def sidecar(method, path, body=None):
    """One call to the sidecar; returns (status, body bytes)."""
    headers = {"Content-Type": "application/json"}
    if DAPR_TOKEN:
        headers["dapr-api-token"] = DAPR_TOKEN
    req = urllib.request.Request(SIDECAR + path, data=body, headers=headers, method=method)
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.read(MAX_BODY).strip()
    except urllib.error.HTTPError as err:  # a non-2xx answer
        return err.code, err.read(MAX_BODY).strip()


def state_path(actor_id):
    return f"/v1.0/actors/Counter/{urllib.parse.quote(actor_id, safe='')}/state"


def load(actor_id):
    """The actor's count: from the cache, else from actor state
    (GET .../state/count answers 200 with the value, or 204 when absent)."""
    with counts_lock:
        if actor_id in counts:
            return counts[actor_id]
    try:
        status, body = sidecar("GET", state_path(actor_id) + "/count")
    except OSError as err:
        raise RuntimeError(f"reading count: {err}") from err
    if status == 204:
        n = 0
    elif status == 200:
        try:
            n = safe_int(json.loads(body))
        except (ValueError, RecursionError):
            n = None
        if n is None:
            raise RuntimeError(f"reading count: stored value {body.decode(errors='replace')} is not an integer")
    else:
        raise RuntimeError(f"reading count: sidecar answered {status}: {body.decode(errors='replace')}")
    with counts_lock:
        counts[actor_id] = n
    return n


def save(actor_id, n):
    """Writes the count with an actor state transaction and, only once the
    sidecar has accepted it (204), updates the cache."""
    tx = [{"operation": "upsert", "request": {"key": "count", "value": n}}]
    try:
        status, body = sidecar("POST", state_path(actor_id), dumps(tx))
    except OSError as err:
        raise RuntimeError(f"saving count: {err}") from err
    if status != 204:
        raise RuntimeError(f"saving count: sidecar answered {status}: {body.decode(errors='replace')}")
    with counts_lock:
        counts[actor_id] = n


def increment(actor_id, by=None):
    """Adds by (None means 1) to the actor's count and saves it."""
    step = 1 if by is None else safe_int(by)
    if step is None:
        raise HTTPError(400, '"by" must be an integer within ±(2^53-1)')
    n = load(actor_id) + step
    if abs(n) > MAX_SAFE_INT:
        raise HTTPError(400, "the count would leave ±(2^53-1)")
    save(actor_id, n)
    return n


def publish(data):
    """Sends an event to the events topic; returns once the sidecar has stored it (204)."""
    try:
        status, body = sidecar("POST", f"/v1.0/publish/{PUBSUB}/{EVENTS_TOPIC}", data)
    except OSError as err:
        raise RuntimeError(f"publishing: {err}") from err
    if status != 204:
        raise RuntimeError(f"publishing: sidecar answered {status}: {body.decode(errors='replace')}")


def receive(body):
    """Keeps the data of one CloudEvent of the events topic; returns the
    answer the sidecar expects: SUCCESS, or DROP for a body that is not one
    (retrying would not help). A None body was larger than MAX_BODY."""
    try:
        if body is None:
            raise ValueError("body larger than 1 MiB")
        event = json.loads(body.decode("utf-8", errors="replace"),
                           parse_constant=reject, parse_float=finite_float)
        if not isinstance(event, dict):
            raise ValueError("not a JSON object")
        if not isinstance(event.get("id"), (str, type(None))):
            raise ValueError('"id" is not a string')
    except (ValueError, RecursionError) as err:
        print(f"dropping an event that is not a CloudEvent: {err}", file=sys.stderr, flush=True)
        return {"status": "DROP"}
    with events_lock:
        events.append(event.get("data"))  # the oldest falls off past MAX_EVENTS
    return {"status": "SUCCESS"}


def dumps(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length

    def route(self):
        """Routes one call of the actor callback protocol; returns (status, JSON value or None)."""
        if APP_TOKEN and not hmac.compare_digest(
                self.headers.get("dapr-api-token", "").encode(), APP_TOKEN.encode()):
            raise HTTPError(401, "missing or wrong dapr-api-token")
        method = "GET" if self.command == "HEAD" else self.command
        raw = self.path.split("?", 1)[0]
        if re.search(r"%(?![0-9A-Fa-f]{2})", raw):
            raise HTTPError(400, "malformed escape in the path")
        parts = [urllib.parse.unquote(p) for p in raw.split("/")][1:]
        match method, parts:
            case "GET", ["dapr", "config"]:
                return 200, ACTOR_CONFIG
            case "GET", ["healthz"]:
                return 200, None
            case "GET", ["dapr", "subscribe"]:
                return 200, SUBSCRIPTIONS
            case "POST", ["events"]:
                return 200, receive(self.body)
            case "GET", ["events"]:
                with events_lock:
                    return 200, list(events)
            case "DELETE", ["actors", "Counter", actor_id] if actor_id:
                with counts_lock:  # deactivation: the state stays in the store
                    counts.pop(actor_id, None)
                return 200, None
            case "PUT", ["actors", "Counter", actor_id, "method", *call] if (
                    actor_id and 1 <= len(call) <= 2 and all(call)):  # call: [method] or [kind, name]
                return 200, {"count": self.method(actor_id, call)}
        raise HTTPError(404, f"no route for {self.command} /{'/'.join(parts)}")

    def method(self, actor_id, call):
        """Runs increment (optional body {"by": n}), get, reset or announce
        (publish the count), or a reminder (remind/{name}) or timer
        (timer/{name}) callback; returns the count."""
        match call:
            case ["increment"]:
                return increment(actor_id, self.read_object().get("by"))
            case ["get"]:
                return load(actor_id)
            case ["reset"]:
                save(actor_id, 0)
                return 0
            case ["announce"]:
                n = load(actor_id)
                publish(dumps({"id": actor_id, "count": n}))
                return n
            case ["remind" | "timer" as kind, name]:
                data = dumps(self.read_object().get("data")).decode()
                what = "reminder" if kind == "remind" else "timer"
                print(f"{what} fired: actor={actor_id} name={name} data={data}", flush=True)
                return increment(actor_id)
        raise HTTPError(404, f"Counter has no method {json.dumps('/'.join(call), ensure_ascii=False)}")

    def read_body(self):
        """The request body, or None when it is larger than MAX_BODY (then
        the rest is left unread and the connection closes after the answer).
        Raises ValueError on broken framing, EOFError if the caller left."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while (size := int(self.rfile.readline(100).split(b";")[0], 16)) != 0:
                if size < 0:
                    raise ValueError("negative chunk size")
                total += size
                if total > MAX_BODY:
                    self.close_connection = True
                    return None
                chunks.append(self.read_exactly(size))
                self.rfile.readline(100)  # the CRLF after the chunk
            while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > MAX_BODY:
            self.close_connection = True
            return None
        return self.read_exactly(length)

    def read_exactly(self, n):
        data = self.rfile.read(n)
        if len(data) < n:
            raise EOFError("the caller went away mid-body")
        return data

    def read_object(self):
        """The JSON object body; empty or null means {}."""
        if self.body is None:
            raise HTTPError(413, "body larger than 1 MiB")
        if not self.body:
            return {}
        try:
            value = json.loads(self.body.decode("utf-8", errors="replace"), parse_constant=reject)
        except (ValueError, RecursionError) as err:
            raise HTTPError(400, f"body is not JSON: {err}") from err
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise HTTPError(400, "body must be a JSON object")
        return value

    def reply(self, status, value):
        body = b"" if value is None else dumps(value)
        try:
            self.send_response(status)
            if value is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except ConnectionError:  # the caller went away; there is no one to answer
            self.close_connection = True

    def handle_any(self):
        try:
            self.body = self.read_body()
        except EOFError:
            self.close_connection = True
            return
        except ValueError:  # unusable framing: the connection cannot be reused
            self.close_connection = True
            return self.reply(400, {"error": "malformed body framing"})
        try:
            status, value = self.route()
        except HTTPError as err:
            status, value = err.status, {"error": str(err)}
        except Exception as err:  # a failed sidecar call, or a bug: answer, never crash
            print(f"call failed: {err}", file=sys.stderr, flush=True)
            status, value = 500, {"error": str(err)}
        self.reply(status, value)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = handle_any

    def log_message(self, format, *args):
        pass  # no access log; callbacks and failures are printed above


def reject(constant):
    raise ValueError(f"{constant} is not JSON")


def finite_float(text):
    """A JSON number as a float, refusing one too large for a float (which
    would be written back as Infinity, not JSON)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large")
    return value


if __name__ == "__main__":
    try:
        server = ThreadingHTTPServer((HOST, PORT), Handler)
    except OSError as err:
        sys.exit(f"counter-python: listen on {HOST}:{PORT}: {err}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"counter-python listening on {HOST}:{server.server_address[1]}, sidecar {SIDECAR}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C
        pass
