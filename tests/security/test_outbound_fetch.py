"""Issue 11, finding 3 (SSRF through failedFilePath): outbound fetches resolve the host, refuse internal
addresses, connect to the address they checked, read URLs the way urllib3 connects, check every redirect hop
and cap the body. The far end is a loopback server, let through only by an explicit allow-list."""

import ipaddress

import pytest
from django.utils import timezone

from campaigns.models import Lead
from cloudagent.safe_http import (
    FetchPolicy,
    FetchRefused,
    FetchTooLarge,
    address_refusal,
    fetch,
    parse_networks,
    url_refusal,
)
from tests.fixtures.callbacks import FileServer, lead_statuses
from uploads.models import UploadTransaction
from uploads.services import failed_file_fetch, failed_file_url_check

LOOPBACK_ONLY = parse_networks("127.0.0.1/32")


def policy(**fields) -> FetchPolicy:
    return FetchPolicy(**{"max_bytes": 1024, "timeout": 10, "allow_http": True, **fields})


@pytest.fixture
def file_server():
    server = FileServer()
    yield server
    server.close()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",  # multicast, which ipaddress counts as global
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # v4-mapped
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
    ],
)
def test_internal_addresses_are_refused(address):
    assert address_refusal(ipaddress.ip_address(address), policy())


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_accepted(address):
    assert address_refusal(ipaddress.ip_address(address), policy()) == ""


def test_the_allow_list_lets_only_the_named_network_through():
    allowing = policy(allow_networks=LOOPBACK_ONLY)
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), allowing) == ""
    assert address_refusal(ipaddress.ip_address("127.0.0.2"), allowing)
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowing) == ""


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000\\@files.example.com/x",  # urlsplit says files.example.com, urllib3 connects to 127.0.0.1
        "http://files.example.com@127.0.0.1/x",
        "http://user:pw@files.example.com/x",
        "http://files.example.com /x",
        "http://files.example.com/x\r\nHost: evil",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/x",
        "http://0x7f000001/x",
        "file:///etc/passwd",
        "gopher://files.example.com/x",
        "http:///x",
    ],
)
def test_urls_read_differently_or_naming_internal_hosts_are_refused(url):
    assert url_refusal(url, policy(allowed_hosts=("example.com",)))


def test_plain_http_is_refused_unless_the_policy_allows_it():
    assert "https" in url_refusal("http://files.example.com/x", policy(allow_http=False))
    assert url_refusal("https://files.example.com/x", policy(allow_http=False)) == ""


def test_a_loopback_server_is_refused_by_default(file_server):
    url = file_server.serve("/f.csv", b"PhoneNumber\n")
    with pytest.raises(FetchRefused, match="loopback"):
        fetch(url, policy=policy())
    assert file_server.requests == []


def test_a_name_resolving_to_an_internal_address_is_refused_before_connecting(file_server):
    url = file_server.serve("/f.csv", b"PhoneNumber\n").replace("127.0.0.1", "files.example.com")
    with pytest.raises(FetchRefused, match="resolves to 127.0.0.1"):
        fetch(url, policy=policy(), resolver=lambda host, port: ["93.184.216.34", "127.0.0.1"])
    assert file_server.requests == []


def test_the_connection_goes_to_the_address_checked_with_the_name_as_host(file_server):
    """DNS rebinding: the resolver answers the checked address once, then an internal one; only one lookup is
    made and the request reaches the address that was checked, naming the host it asked for."""
    hosts = []
    original = file_server.httpd.RequestHandlerClass.do_GET

    def recording(handler):
        hosts.append(handler.headers["Host"])
        original(handler)

    file_server.httpd.RequestHandlerClass.do_GET = recording
    port = file_server.httpd.server_address[1]
    url = file_server.serve("/f.csv", b"PhoneNumber\n").replace("127.0.0.1", "files.example.com")
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])

    result = fetch(url, policy=policy(allow_networks=LOOPBACK_ONLY), resolver=lambda host, port: next(answers))

    assert result.status == 200 and result.body == b"PhoneNumber\n"
    assert hosts == [f"files.example.com:{port}"]


def test_every_redirect_hop_is_checked_the_same_way(file_server):
    allowing = policy(allow_networks=LOOPBACK_ONLY)
    real = file_server.serve("/real.csv", b"PhoneNumber\n")
    assert fetch(file_server.serve("/moved.csv", status=302, Location=real), policy=allowing).body == b"PhoneNumber\n"

    for location in ("http://169.254.169.254/latest/meta-data/", f"{file_server.url}\\@files.example.com/real.csv"):
        file_server.requests.clear()
        with pytest.raises(FetchRefused):
            fetch(file_server.serve("/escape.csv", status=302, Location=location), policy=allowing)
        assert file_server.requests == ["/escape.csv?X-Amz-Expires=86400&X-Amz-Signature=abc123"]


def test_a_redirect_loop_stops(file_server):
    loop = file_server.serve("/loop.csv", status=302, Location="/loop.csv")
    with pytest.raises(FetchRefused, match="redirects"):
        fetch(loop, policy=policy(allow_networks=LOOPBACK_ONLY))


def test_the_body_is_capped(file_server):
    url = file_server.serve("/big.csv", b"9" * 2048)
    with pytest.raises(FetchTooLarge):
        fetch(url, policy=policy(allow_networks=LOOPBACK_ONLY, max_bytes=1024))


# --- wired into the failed-file job ---------------------------------------------------------------------------


@pytest.fixture
def completed_transaction(make_upload_transaction, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path

    def make(url: str) -> UploadTransaction:
        now = timezone.now()
        upload_transaction = make_upload_transaction(
            3, state=UploadTransaction.State.COMPLETED, numbers_not_processed=1, finished_at=now
        )
        UploadTransaction.objects.filter(pk=upload_transaction.pk).update(failed_file_url=url)
        return upload_transaction

    return make


@pytest.mark.django_db
def test_by_default_a_failed_file_on_an_internal_address_is_never_fetched(completed_transaction, file_server, settings):
    settings.CLOUDAGENT_FETCH_ALLOW_NETWORKS = []
    upload_transaction = completed_transaction(file_server.serve("/f.csv", b"PhoneNumber,Reason\n"))

    failed_file_fetch(upload_transaction=upload_transaction)

    upload_transaction.refresh_from_db()
    assert file_server.requests == []
    assert "loopback" in upload_transaction.attention
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UNCONFIRMED}


@pytest.mark.django_db
def test_the_backslash_trick_does_not_pass_the_host_list(settings):
    settings.CLOUDAGENT_FAILED_FILE_HOSTS = ["example.com"]
    assert failed_file_url_check("http://127.0.0.1:8000\\@files.example.com/x")
    assert failed_file_url_check("https://files.example.com/x.csv") == ""


@pytest.mark.django_db
def test_plain_http_failed_files_are_refused_outside_development(settings):
    settings.LEADHUB_ALLOW_PLAIN_HTTP = False
    assert "https" in failed_file_url_check("http://files.example.com/x.csv")
