"""Issue 11, Low: CloudAgent's answer was read whole, whatever its size. A base URL pointing somewhere else (or a
proxy's error page) could make a push worker hold any amount of memory."""

import pytest

from cloudagent.client import MAX_ANSWER_BYTES, CloudAgentClient
from cloudagent.errors import UnexpectedResponseError
from tests.fixtures.core import LoopbackHTTPServer, QuietHandler


class HugeAnswerServer(LoopbackHTTPServer):
    def __init__(self, size: int):
        class Handler(QuietHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()  # no Content-Length: the size shows only while reading
                chunk = b" " * 65536
                try:
                    for _ in range(size // len(chunk)):
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading, as it should
                self.close_connection = True

        super().__init__(Handler)


@pytest.fixture
def huge_answer():
    server = HugeAnswerServer(4 * MAX_ANSWER_BYTES)
    yield server
    server.close()


def test_an_answer_over_the_cap_is_not_read_whole(huge_answer):
    with CloudAgentClient(base_url=huge_answer.url, user_name="u", api_key="k") as client:
        with pytest.raises(UnexpectedResponseError, match="over 1048576 bytes") as raised:
            client.add_bulk_data(campaign_name="C", column_map=["PhoneNumber"], rows=[["9876543210"]])
    assert raised.value.ambiguous, "CloudAgent may have queued it: a re-send must check duplicates"
