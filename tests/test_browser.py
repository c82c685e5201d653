"""Open the built book in headless Chromium over a local HTTP server and visit every page.

Fails on a broken image, a broken internal link or a JavaScript error; saves a screenshot of the
introduction page (the results summary) next to the built HTML. Skipped cleanly where no Chromium or
Playwright is installed (Debian: `apt-get install chromium`).
"""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _benign(text: str) -> bool:
    """Console messages that are not page faults: the theme's note on a first visit (no saved light/dark
    mode yet) and the browser's own line for a failed request, which the response handler reports
    with its URL instead."""
    return "Got invalid theme mode" in text or "Failed to load resource" in text


@pytest.fixture(scope="module")
def server(tiny_book):
    html = tiny_book.book_dir / "_build" / "html"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", html
    httpd.shutdown()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_every_page_loads_without_broken_images_links_or_js_errors(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, html = server
    pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                   if not p.relative_to(html).parts[0].startswith("_"))
    assert "index.html" in pages and any(p.startswith("chapters/") for p in pages)
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.on("pageerror", lambda exc: problems.append(f"{page.url}: JavaScript error {exc}"))
        page.on("console", lambda msg: msg.type == "error" and not _benign(msg.text)
                and problems.append(f"{page.url}: console error {msg.text}"))
        page.on("response", lambda r: r.status >= 400
                and problems.append(f"{page.url}: HTTP {r.status} for {r.url}"))
        for rel in pages:
            response = page.goto(urljoin(base, rel), wait_until="load")
            assert response is not None and response.ok, f"{rel}: HTTP {response.status if response else '?'}"
            page.wait_for_load_state("networkidle")  # index.html redirects to the first page
            broken = page.eval_on_selector_all(
                "img", "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
            problems += [f"{rel}: broken image {src}" for src in broken]
            for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)"):
                url = urlparse(href)
                if url.netloc != urlparse(base).netloc or not url.path.endswith(".html"):
                    continue
                target = html / url.path.lstrip("/")
                if not target.is_file():
                    problems.append(f"{rel}: broken link {href}")
        page.goto(urljoin(base, "chapters/01_introduction.html"), wait_until="load")
        page.screenshot(path=str(html / "_screenshot_results_summary.png"), full_page=True)
        browser.close()
    assert not problems, "\n".join(problems[:30])
    assert (html / "_screenshot_results_summary.png").stat().st_size > 10_000
