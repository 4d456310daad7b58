"""The HTTP server around the engine, its configuration file and its command line.

HTTP: POST the API path; GET /files/<name>?expires=..&signature=.. (failed-rows files, pre-signed style);
GET /recordings/<monitorUCID>.wav (an answered call's AudioFile); GET /_emulator/inspect[?sections=a,b];
POST /_emulator/config | reset | fault | process-now | push-url (JSON control)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from emulator.dialer import silent_recording
from emulator.engine import Account, Campaign, Emulator
from emulator.protocol import API_PATH, parse_fields
from emulator.settings import SETTING_NAMES, Settings

DEFAULT_CONFIG = Path(__file__).with_name("demo_config.json")
MAX_BODY_BYTES = 64 * 1024 * 1024
PUSH_URL_ENV = "CLOUDAGENT_EMULATOR_PUSH_URL"
DESCRIPTION = "Emulator of Ozonetel CloudAgent's Add Campaign Bulk Data (V4) API and of its call summaries."


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, so a client's connection reuse (and a dropped connection) is exercised."""

    protocol_version = "HTTP/1.1"
    server_version = "cloudagent-emulator"
    sys_version = ""
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle and delayed ACKs add 40 ms to each answer.
    disable_nagle_algorithm = True

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator

    def do_POST(self) -> None:
        path, _, _ = self.path.partition("?")
        body = self._read_body()
        if body is None:
            return
        if path == API_PATH:
            self._api(body)
        elif path.startswith("/_emulator/"):
            self._control(path, body)
        else:
            self._send_json(404, {"error": f"no such path: {path}"})

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/_emulator/inspect":
            sections = [name for name in parse_qs(query).get("sections", [""])[0].split(",") if name]
            try:
                self._send(200, "application/json", self.emulator.inspect_json(sections))
            except ValueError as exc:
                self._send_json(400, {"error": str(exc)})
        elif path.startswith("/files/"):
            self._send(*self.emulator.files.serve(path.removeprefix("/files/"), query))
        elif path.startswith("/recordings/") and path.endswith(".wav"):
            if self.emulator.recording(path.removeprefix("/recordings/").removesuffix(".wav")):
                self._send(200, "audio/wav", silent_recording())
            else:
                self._send_json(404, {"error": f"no such recording: {path}"})
        else:
            self._send_json(404, {"error": f"no such path: {path}"})

    def _api(self, body: bytes) -> None:
        content_type = self.headers.get("Content-Type", "")
        host, port = self.server.server_address[:2]
        base_url = f"http://{self.headers.get('Host') or f'{host}:{port}'}"
        reply = self.emulator.add_bulk_data(parse_fields(content_type, body), content_type, base_url)
        for callback in reply.callbacks_first:
            self.emulator.deliver(callback, reply.generation)
        if reply.delay:
            self.emulator.pause(reply.delay)
        if reply.drop:  # the request counted and was queued; the client only loses the answer
            self.close_connection = True
            return
        self._send(reply.status, reply.content_type, reply.body)

    def _control(self, path: str, body: bytes) -> None:
        emulator = self.emulator
        try:
            document = json.loads(body or b"{}")
            if not isinstance(document, dict):
                raise ValueError("the body must be a JSON object")
            if path == "/_emulator/config":
                result = emulator.configure(document)
            elif path == "/_emulator/reset":
                result = emulator.reset()
            elif path == "/_emulator/fault":
                result = emulator.force_fault(document.get("fault"), document.get("count", 1))
            elif path == "/_emulator/process-now":
                result = emulator.process_now()
            elif path == "/_emulator/push-url":
                result = emulator.set_push_url(document.get("userName"), document.get("campaign"), document.get("url"))
            else:
                self._send_json(404, {"error": f"no such path: {path}"})
                return
        except ValueError as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(200, result)

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES or "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send_json(400, {"error": f"send a Content-Length of at most {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(length)

    def _send_json(self, status: int, document: object) -> None:
        self._send(status, "application/json", json.dumps(document).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        # The API calls only: inspect polls and control calls would bury them (GET /_emulator/inspect has it all).
        if self.path.startswith(API_PATH):
            super().log_request(code, size)


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not keep the process alive at shutdown
    request_queue_size = 128  # bursts of concurrent clients (tests, benchmarks) must not wait on SYN retries

    def __init__(self, address: tuple[str, int], emulator: Emulator):
        super().__init__(address, Handler)
        self.emulator = emulator

    def handle_error(self, request, client_address) -> None:
        # A client that hung up (a timed-out slow answer) is the client's business, not an emulator error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def load_config(path: Path | str) -> tuple[list[Account], Settings]:
    """Accounts and settings from a JSON file shaped {"accounts": [{"userName", "apiKey", "pushUrl"?, "campaigns":
    [{"name", "type": "outbound"|"inbound", "map": [...], "pushUrl"?}]}], "dnd": [...], "settings": {...}}."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        accounts = []
        for entry in document["accounts"]:
            campaigns = {}
            for item in entry.get("campaigns", []):
                kind = item.get("type", "outbound")
                if kind not in ("outbound", "inbound"):
                    raise ValueError(f"campaign {item['name']}: type must be outbound or inbound")
                if kind == "outbound" and "PhoneNumber" not in item.get("map", []):
                    raise ValueError(f"campaign {item['name']}: an outbound campaign needs a map with PhoneNumber")
                campaigns[item["name"]] = Campaign(
                    name=item["name"], kind=kind, map=list(item.get("map", [])), push_url=item.get("pushUrl", "")
                )
            accounts.append(
                Account(
                    user_name=entry["userName"],
                    api_key=entry["apiKey"],
                    campaigns=campaigns,
                    push_url=entry.get("pushUrl", ""),
                )
            )
        if not accounts:
            raise ValueError("no accounts")
        settings = Settings().updated({**document.get("settings", {}), "dnd": document.get("dnd", [])})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"config {path}: {type(exc).__name__}: {exc}") from exc
    return accounts, settings


def read_dnd(path: Path | str) -> tuple[str, ...]:
    """DND numbers, one a line; blank lines and # comments are skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag, built from Settings; shared with `manage.py cloudagent_emulator`. Settings flags default to
    SUPPRESS so that only the flags given override the config file's "settings"."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="port to bind; 0 picks a free one (default: 8900)")
    parser.add_argument("--config", type=Path, help=f"accounts and campaigns, JSON (default: {DEFAULT_CONFIG.name})")
    parser.add_argument(
        "--dnd", type=Path, metavar="FILE", dest="dnd_file", help="DND numbers, one a line, added to the config's"
    )
    defaults = Settings()
    for item in fields(Settings):
        if item.name == "dnd":
            continue
        default = getattr(defaults, item.name)
        flag = "--" + item.name.replace("_", "-")
        help_text = f"{item.metadata['help']} (default: {default})"
        if isinstance(default, bool):
            action = argparse.BooleanOptionalAction
            parser.add_argument(flag, action=action, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(
                flag, type=type(default), choices=item.metadata["choices"], default=argparse.SUPPRESS, help=help_text
            )


def create_server(options: Mapping[str, object]) -> EmulatorServer:
    """A bound server from parsed flags (argparse's or Django's); ValueError or OSError says what is wrong.
    Settings come from the config file, then CLOUDAGENT_EMULATOR_PUSH_URL, then the flags given."""
    accounts, settings = load_config(options.get("config") or DEFAULT_CONFIG)
    if PUSH_URL_ENV in os.environ and "push_url" not in options:
        settings = settings.updated({"push_url": os.environ[PUSH_URL_ENV]})
    settings = settings.updated({name: options[name] for name in SETTING_NAMES if name in options})
    if options.get("dnd_file"):
        settings = replace(settings, dnd=settings.dnd + read_dnd(options["dnd_file"]))
    address = (options.get("host") or "127.0.0.1", int(options.get("port", 8900)))
    return EmulatorServer(address, Emulator(accounts, settings))


def serve(server: EmulatorServer) -> None:
    """Serve until SIGTERM or SIGINT, then stop the worker and close the socket."""

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, so it must not run on serve_forever's own thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.emulator.start()
    host, port = server.server_address[:2]
    print(f"cloudagent-emulator listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.emulator.stop()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=DESCRIPTION)
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        server = create_server(options)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    serve(server)
