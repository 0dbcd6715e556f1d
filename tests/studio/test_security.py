"""The studio's security rules, request by request against a real ``runner studio``
process: Host allow-list, CSRF token and Origin on POST, no GET that writes, stored
files only by (run id, stored name), a token off loopback, a strict CSP; and
``get_portal_url()`` pointing at the studio only while one serves the workspace."""

from __future__ import annotations

import io
import re
import zipfile
from urllib.parse import quote, urlsplit

import pytest

from tests.helpers import run_cli, run_code, wait_until
from tests.studio.conftest import StudioWorkspace, http, wait_file

pytestmark = pytest.mark.slow


@pytest.fixture
def served(sws: StudioWorkspace) -> tuple[StudioWorkspace, str, str]:
    """A finished run with a stored file, and a loopback studio: (workspace, url, run id)."""
    run_id, markers = sws.submit("st_train.py")
    (markers / "more").touch()
    (markers / "finish").touch()
    wait_until(
        lambda: sws.cli("run", "show", "-r", run_id)["status"] == "Completed", 30, interval_s=0.2
    )
    return sws, sws.start_studio(), run_id


def csrf_of(html: bytes) -> str:
    found = re.search(rb'name="csrf-token" content="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1).decode()


def test_security_rules_of_a_loopback_studio(served) -> None:
    sws, url, run_id = served
    origin = url.rstrip("/")
    status, headers, html = http(f"{url}runs/{run_id}")
    assert status == 200
    csp = headers["content-security-policy"]
    for part in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
        assert part in csp, csp
    assert "unsafe-inline" not in csp, csp
    # No inline script and no inline style anywhere on the page (the CSP would block them).
    assert re.findall(rb"<script(?![^>]*\bsrc=)", html) == [], "an inline <script>"
    assert b" style=" not in html
    assert b"<style" not in html
    assert re.findall(rb"\son[a-z]+=", html) == [], "an inline event handler"

    # DNS rebinding: a name this studio does not answer to.
    status, _, body = http(f"{url}runs/{run_id}", headers={"Host": "attacker.example:80"})
    assert status == 400, body

    # Writes: no GET changes anything; a POST needs the CSRF token and our Origin.
    cancel = f"{url}runs/{run_id}/cancel"
    assert http(cancel)[0] == 405
    assert http(cancel, "POST", {"Origin": origin}, b"")[0] == 403
    token = csrf_of(html)
    form = f"csrf={token}".encode()
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    assert http(cancel, "POST", {**form_type, "Origin": "http://evil.example"}, form)[0] == 403
    assert http(cancel, "POST", form_type, form)[0] == 403  # no Origin at all
    tags = f"{url}runs/{run_id}/tags"
    body = f"csrf={token}&key=reviewed&value=yes".encode()
    status, headers, _ = http(tags, "POST", {**form_type, "Origin": origin}, body)
    assert status == 303, status
    assert sws.cli("run", "show", "-r", run_id)["tags"].get("reviewed") == "yes"

    # Stored files: only by (run id, stored name) as the history holds them.
    files = sws.cli("run", "show", "-r", run_id, "--query", "files") or []
    log_name = "azureml-logs/70_driver_log.txt"
    ok = http(f"{url}runs/{run_id}/file?name={quote(log_name)}")
    assert ok[0] == 200, (ok[0], files)
    assert b"hello from the driver log" in ok[2]
    for name in ("../../workspace.json", "../workspace.json", "/etc/passwd", "azureml-logs/../x"):
        status, _, _ = http(f"{url}runs/{run_id}/file?name={quote(name)}")
        assert status == 404, name
    assert http(f"{url}runs/{quote('../' + run_id)}/file?name={quote(log_name)}")[0] == 404

    # The source snapshot as a zip, found through the history.
    status, headers, data = http(f"{url}runs/{run_id}/snapshot.zip")
    assert status == 200
    assert headers["content-disposition"].startswith("attachment")
    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        assert "st_train.py" in zipped.namelist(), zipped.namelist()


def test_a_studio_off_loopback_needs_its_token(sws: StudioWorkspace) -> None:
    """Bound to all addresses, the studio prints a token URL once; without the token or
    its session cookie every request is 401; the token gives an HttpOnly SameSite=Strict
    cookie that then lets requests through."""
    first = sws.start_studio("--host", "0.0.0.0")  # noqa: S104 - what is tested
    parts = urlsplit(first)
    assert parts.query.startswith("token="), first
    base = f"{parts.scheme}://{parts.netloc}"
    assert http(f"{base}/")[0] == 401
    assert http(f"{base}/?token=wrong")[0] == 401
    status, headers, _ = http(first)
    assert status == 303, status
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie, cookie
    assert "SameSite=Strict" in cookie, cookie
    session = cookie.split(";", 1)[0]
    assert http(f"{base}/", headers={"Cookie": session})[0] == 200
    assert http(f"{base}/", headers={"Cookie": "runner_studio=forged"})[0] == 401


def test_portal_url_points_at_the_studio_while_it_serves(served) -> None:
    """run.get_portal_url() (from another process) is the studio's page of the run while
    a studio serves the workspace, and the run folder's file:// URL once it stopped."""
    sws, url, run_id = served
    code = """
        import sys
        from runner import Run, Workspace
        print(Run.get(Workspace.get(sys.argv[1]), sys.argv[2]).get_portal_url())
    """
    during = run_code(code, sws.path, run_id, env=sws.env)
    assert during.stdout.strip() == f"{url}runs/{run_id}", during
    assert http(during.stdout.strip())[0] == 200
    record = sws.path / "daemon" / "studio.json"
    assert '"pid"' in wait_file(record)
    studio = sws.studios[0]
    studio.terminate()
    studio.communicate(timeout=15)
    assert not record.exists(), "the studio left its address file behind"
    after = run_code(code, sws.path, run_id, env=sws.env)
    assert after.stdout.strip().startswith("file://"), after


def test_bad_command_lines_are_one_line_and_exit_2(sws: StudioWorkspace) -> None:
    """A port out of range, and a port already taken: one line on stderr, exit 2."""
    bad = run_cli("studio", "--port", "99999", env=sws.env)
    assert bad.returncode == 2, bad
    assert "port" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    url = sws.start_studio()
    port = urlsplit(url).port
    taken = run_cli("studio", "-w", str(sws.path), "--port", str(port), env=sws.env)
    assert taken.returncode == 2, taken
    assert len(taken.stderr.strip().splitlines()) == 1, taken.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr, taken.stderr
