"""The web UI in a real headless Chromium against a seeded live server: every page loads
without console errors or failed requests, and the main flows work end to end."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.ui.conftest import Site, Watch

pytestmark = [pytest.mark.ui, pytest.mark.server, pytest.mark.timeout(120)]


def _pages(site: Site) -> list[tuple[str, str, int]]:
    """(path, text the page must show, charts it must draw)."""
    d = site.data
    run = d.run_ids[0]
    return [
        ("/ui/", "churn-sweep", 0),
        (f"/ui/experiments/{d.experiment_id}", "run-4", 0),
        (f"/ui/runs/{run}", "Metric charts", 2),
        (f"/ui/runs/{run}/artifacts/plots/confusion.png", "Download", 0),
        (f"/ui/runs/{run}/artifacts/predictions.csv", "score", 0),
        (f"/ui/runs/{run}/artifacts/notes.txt", "trained on churn@1", 0),
        (f"/ui/runs/{run}/artifacts/errors.json", "c-17", 0),
        (f"/ui/runs/{run}/artifacts/report.html", "only offered as downloads", 0),
        ("/ui/compare?" + "&".join(f"run={r}" for r in d.run_ids[:3]), "Parallel coordinates", 3),
        ("/ui/models", "Pending approvals", 0),
        (f"/ui/models/{d.model}", "Promotion requests", 0),
        (f"/ui/models/{d.model}/versions/2", "Model card", 0),
        ("/ui/datasets", d.dataset, 0),
        (f"/ui/datasets/{d.dataset}", "Profile plots", 2),
        (f"/ui/datasets/{d.dataset}/diff?a=1&b=2", "PSI", 0),
        ("/ui/features", "customer_stats", 0),
        ("/ui/endpoints", d.endpoint, 0),
        (f"/ui/endpoints/{d.endpoint}", "Traffic split", 1),
        ("/ui/monitoring", d.monitor, 0),
        (f"/ui/monitoring/{d.monitor}", "Drift per feature over time", 4),  # + 2 histograms, performance
        ("/ui/pipelines", "ui_flow", 0),
        (f"/ui/pipelines?run={d.pipeline_run}", "make_numbers", 1),
        ("/ui/audit", "Audit log", 0),
        ("/ui/audit?verify=1", "Chain intact", 0),
    ]


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", path.split("?")[0]).strip("-")[:80] or "root"


def test_every_page_loads_without_errors(site: Site, watched: tuple[Any, Watch]) -> None:
    page, watch = watched
    for path, text, charts in _pages(site):
        page.goto(site.url + path, wait_until="load")
        assert text in page.content(), f"{path} does not show {text!r}"
        if charts:
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot').length >= {charts}", timeout=30_000
            )
        page.screenshot(path=str(site.screenshots / f"{_slug(path)}.png"), full_page=True)
        assert not watch.problems, f"{path}: " + "\n".join(watch.problems)
    page.goto(site.url + "/", wait_until="load")
    assert page.url.endswith("/ui/")


def test_live_traffic_per_version_is_charted(site: Site, watched: tuple[Any, Watch]) -> None:
    page, _ = watched
    body = {"dataframe_split": {"columns": ["tenure"], "data": [[4.0], [6.0]]}}

    def send(n: int) -> None:
        with httpx.Client(base_url=site.url, timeout=60) as client:
            for _ in range(n):
                r = client.post(f"/endpoints/{site.data.endpoint}/invocations", json=body)
                assert r.status_code == 200 and r.json()["predictions"] == [0, 1]

    send(3)  # the first request loads the models
    page.goto(f"{site.url}/ui/endpoints/{site.data.endpoint}")
    page.wait_for_function("document.querySelector('#live-table').innerText.includes('primary')")
    send(20)
    # a rate needs two readings 3 s apart with traffic between them
    served = "[...document.querySelectorAll('#live-table tbody tr')].reduce((n, tr) => n + Number(tr.cells[2].textContent), 0)"
    page.wait_for_function(f"({served}) >= 23")  # the table refreshes itself every 3 s
    page.wait_for_function("document.querySelectorAll('#live-rate .scatterlayer .trace').length >= 1")
    rows = page.locator("#live-table tbody tr").all_inner_texts()
    assert {r.split("\t")[1] for r in rows} <= {"1", "2"}  # one row per variant and model version
    page.screenshot(path=str(site.screenshots / "endpoint-live.png"), full_page=True)


def _names(page: Any) -> list[str]:
    return page.locator("#runs-table tbody tr td:nth-child(2)").all_inner_texts()


def test_filter_sort_and_choose_columns_of_runs(site: Site, watched: tuple[Any, Watch]) -> None:
    page, watch = watched
    page.goto(f"{site.url}/ui/experiments/{site.data.experiment_id}")
    assert sorted(_names(page)) == [f"run-{i}" for i in range(5)]
    page.fill("input[name=filter]", "metrics.accuracy > 0.75 AND params.model = 'gbm'")
    page.press("input[name=filter]", "Enter")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 2")
    assert sorted(_names(page)) == ["run-2", "run-4"]
    assert "filter=metrics.accuracy" in page.url  # the URL follows, so the view can be shared

    page.fill("input[name=filter]", "")
    page.press("input[name=filter]", "Enter")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 5")
    page.click("#runs-table th a:text-is('accuracy')")  # descending first
    page.wait_for_function("document.querySelector('#runs-table th.desc') !== null")
    assert _names(page) == ["run-4", "run-3", "run-2", "run-1", "run-0"]
    page.click("#runs-table th a:text-is('accuracy')")
    page.wait_for_function("document.querySelector('#runs-table th.asc') !== null")
    assert _names(page) == ["run-0", "run-1", "run-2", "run-3", "run-4"]

    page.click("#column-chooser summary")
    page.uncheck("input.col-choice[value='metrics.loss']")
    page.click("#apply-columns")
    page.wait_for_function("!document.querySelector('#runs-table').innerText.includes('loss')")
    headers = page.locator("#runs-table thead th").all_inner_texts()
    assert "accuracy" in " ".join(headers) and "max_depth" in " ".join(headers)

    watch.allow.append("partial=1")  # the bad filter below is answered with a 400 fragment
    page.fill("input[name=filter]", "metrics.accuracy > 'x' AND")
    page.press("input[name=filter]", "Enter")
    page.wait_for_selector("#runs-table .flash.error")
    assert "filter" in page.inner_text("#runs-table .flash.error")
    page.screenshot(path=str(site.screenshots / "runs-filter-error.png"))


def test_filter_errors_are_shown_not_failed(site: Site) -> None:
    url = f"{site.url}/ui/experiments/{site.data.experiment_id}"
    r = httpx.get(url, params={"filter": "metrics.accuracy >>> 1", "partial": "1"})
    assert r.status_code == 400 and "must be a number" in r.text


def test_compare_selected_runs(site: Site, watched: tuple[Any, Watch]) -> None:
    page, _ = watched
    page.goto(f"{site.url}/ui/experiments/{site.data.experiment_id}")
    button = page.locator("#compare-runs")
    assert button.is_disabled()
    for rid in site.data.run_ids[:3]:
        page.check(f"input.run-select[value='{rid}']")
    assert button.inner_text() == "Compare 3 selected"
    button.click()
    page.wait_for_url(re.compile(r"/ui/compare\?"))
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3")
    differing = page.locator("table.compare tr.differs th").all_inner_texts()
    assert set(differing) == {"lr", "max_depth", "model"}
    assert page.locator(".js-plotly-plot .parcoords").count() == 1
    page.screenshot(path=str(site.screenshots / "compare.png"), full_page=True)


def test_an_approval_for_what_the_page_no_longer_shows_moves_nothing(site: Site) -> None:
    """The approve form carries the digest and Production version the approver saw; the approval
    is a compare-and-swap against them (runs before the real approval below)."""
    with httpx.Client(base_url=site.url) as client:
        html = client.get("/ui/models").text
        row = html[html.index(f'id="req-{site.data.request_id}"') :]
        fields = dict(re.findall(r'name="(csrf_token|digest|expected_champion)" value="([^"]*)"', row)[:3])
        assert set(fields) == {"csrf_token", "digest", "expected_champion"}
        url = f"/ui/requests/{site.data.request_id}/approve"
        stale = client.post(
            url, data={**fields, "expected_champion": str(int(fields["expected_champion"]) + 7)}
        )
        assert stale.status_code == 409
        other = client.post(url, data={**fields, "digest": "0" * 64})
        assert other.status_code == 409
        missing = client.post(url, data={"csrf_token": fields["csrf_token"]})
        assert missing.status_code == 400 and "expected_champion" in missing.text
    version = httpx.get(f"{site.url}/api/v1/registry/models/{site.data.model}/versions/2").json()
    assert "Production" not in str(version)


def test_approve_a_promotion(site: Site, watched: tuple[Any, Watch]) -> None:
    page, _ = watched
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{site.url}/ui/models")
    row = page.locator(f"#req-{site.data.request_id}")
    assert "alice" in row.inner_text()
    row.locator("input[name=reason]").fill("looks good")
    row.locator("button.approve").click()
    page.wait_for_url(re.compile(rf"/ui/models/{site.data.model}\?decided="))
    assert "approved" in page.locator(f"#req-{site.data.request_id}").inner_text()
    history = page.locator("table").last.inner_text()
    assert "Production" in history and "bob" in history  # the server's user approved it
    version = httpx.get(f"{site.url}/api/v1/registry/models/{site.data.model}/versions/2").json()
    assert "Production" in str(version)
    page.screenshot(path=str(site.screenshots / "approved.png"), full_page=True)


def test_a_post_without_the_csrf_token_changes_nothing(site: Site) -> None:
    with httpx.Client(base_url=site.url) as client:
        client.get("/ui/models")  # the browser's cookie, but a forged form without the token
        r = client.post(f"/ui/endpoints/{site.data.endpoint}/rollback", data={"csrf_token": "x" * 43})
        assert r.status_code == 403 and "CSRF" in r.text
        r = client.post(f"/ui/endpoints/{site.data.endpoint}/rollback", data={})
        assert r.status_code == 403
    weights = httpx.get(f"{site.url}/api/v1/endpoints/{site.data.endpoint}").json()
    assert "canary" in str(weights)


def test_change_the_canary_split_then_roll_back(site: Site, watched: tuple[Any, Watch]) -> None:
    page, _ = watched
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    page.goto(f"{site.url}/ui/endpoints/{site.data.endpoint}")
    assert "10.0%" in page.inner_text("table.split")
    page.fill("#split-form input[name=percent]", "25")
    page.click("#split-form button[type=submit]")
    page.wait_for_function("document.querySelector('table.split').innerText.includes('25.0%')")
    assert "75.0%" in page.inner_text("table.split")
    assert asked and "canary" in asked[-1]
    assert "canary set to 25% from the UI" in page.content()

    page.click("#rollback")
    page.wait_for_function("!document.querySelector('table.split').innerText.includes('canary')")
    assert "100.0%" in page.inner_text("table.split")
    assert len(asked) == 2

    page.fill("#split-form input[name=canary_uri]", "models:/churn/2")
    page.fill("#split-form input[name=percent]", "50")
    page.click("#split-form button[type=submit]")
    page.wait_for_selector("#rollout")
    page.click("#rollout")  # the canary becomes the primary, with all live traffic
    page.wait_for_function("!document.querySelector('table.split').innerText.includes('canary')")
    split = page.inner_text("table.split")
    assert "models:/churn/2" in split and "100.0%" in split and "models:/churn/1" not in split
    assert len(asked) == 4
    events = page.locator("table").last.inner_text()
    assert "promoted" in events and "rollback" in events
    page.screenshot(path=str(site.screenshots / "rolled-back.png"), full_page=True)


def test_a_dismissed_confirmation_changes_nothing(site: Site, watched: tuple[Any, Watch]) -> None:
    page, _ = watched
    api = f"{site.url}/api/v1/endpoints/{site.data.endpoint}"
    before = httpx.get(api).json()
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.goto(f"{site.url}/ui/endpoints/{site.data.endpoint}")
    page.fill("#split-form input[name=percent]", "50")
    page.fill("#split-form input[name=canary_uri]", "models:/churn/2")
    with page.expect_event("dialog"):
        page.click("#split-form button[type=submit]")
    page.wait_for_timeout(500)
    assert page.url.endswith(f"/ui/endpoints/{site.data.endpoint}")
    assert httpx.get(api).json() == before


def test_artifacts_preview_safely(site: Site, watched: tuple[Any, Watch]) -> None:
    page, _ = watched
    run = site.data.run_ids[0]
    page.goto(f"{site.url}/ui/runs/{run}/artifacts/plots/confusion.png")
    assert page.eval_on_selector("img.preview", "img => img.complete && img.naturalWidth") == 4
    raw = httpx.get(f"{site.url}/ui/runs/{run}/raw/report.html")
    assert raw.status_code == 200 and raw.content.startswith(b"<html>")
    assert raw.headers["content-disposition"].startswith("attachment")
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert raw.headers["content-type"] == "application/octet-stream"
    with page.expect_download() as download:
        page.goto(f"{site.url}/ui/runs/{run}/artifacts/report.html")
        page.click("a.button")
    assert download.value.suggested_filename == "report.html"
    assert page.evaluate("window.__pwned === undefined")
    page.goto(f"{site.url}/ui/runs/{run}/artifacts/errors.json")  # a log_table file shows as a table
    assert page.locator("table th").all_inner_texts()[:2] == ["customer", "error"]
    assert page.locator("table tbody tr").count() == 2


def test_a_pipeline_run_shows_its_steps_and_cache_hits(site: Site, watched: tuple[Any, Watch]) -> None:
    page, _ = watched
    page.goto(f"{site.url}/ui/pipelines")
    page.click(f"a[href='/ui/pipelines?run={site.data.pipeline_run}']")
    rows = page.locator("table.steps tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows] == ["make_numbers", "add_up"]
    assert all("hit" in r for r in rows)  # the second run reused both steps' outputs
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 1")


def test_the_audit_log_lists_ui_actions_and_verifies_its_chain(
    site: Site, watched: tuple[Any, Watch]
) -> None:
    page, _ = watched
    with httpx.Client(base_url=site.url) as client:  # one audited change through the UI's own form
        client.get("/ui/models")
        token = client.cookies["loopml_csrf"]
        r = client.post(
            f"/ui/endpoints/{site.data.endpoint}/split",
            data={"csrf_token": token, "percent": "5", "canary_uri": "models:/churn/2"},
        )
        assert r.status_code == 303
    page.goto(f"{site.url}/ui/audit")
    assert "POST /ui/endpoints/{name}/split" in page.inner_text("table.audit")
    page.click("#verify-chain")
    assert "Chain intact" in page.inner_text("#verify-result")
    page.goto(f"{site.url}/ui/audit?target=nothing-like-this")
    assert "No audit entries match" in page.content()


def test_missing_things_get_an_html_page_that_names_them(site: Site) -> None:
    r = httpx.get(f"{site.url}/ui/runs/0123456789abcdef0123456789abcdef")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "0123456789abcdef0123456789abcdef" in r.text
    r = httpx.get(f"{site.url}/ui/no-such-page")
    assert r.status_code == 404 and "no page at /ui/no-such-page" in r.text
    r = httpx.get(f"{site.url}/ui/compare", params={"run": site.data.run_ids[0]})
    assert r.status_code == 400 and "2 to 10 runs" in r.text
