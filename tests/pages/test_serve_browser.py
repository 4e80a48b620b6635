"""`make serve` in a real browser: the planted demo's pages served by anneuron.pages.serve (with the model loaded
once) on 127.0.0.1; on L2N892's view, typing "The walk ended. Then he picked an apple" shades " picked" darkest, every
token
carries the model's top-1 prediction, a second text is drawn on the same scale, and the console stays clean. Skipped,
with the reason, only where no Chromium can be found (.ci/run installs it)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from pages_demo import build_demo_site
from test_browser import check_screenshot, console_errors, open_page

from anneuron.devtools.browser import chromium, missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"no headless browser: {missing()}")
TEXT = "The walk ended. Then he picked an apple"


@pytest.fixture(scope="module")
def server(demo_dir, demo_congruence, demo_recorded, demo_bridge, tmp_path_factory):
    import uvicorn

    from anneuron.pages.serve import ActivationModel, create_app

    site = build_demo_site(tmp_path_factory.mktemp("serve-site"), demo_dir, demo_congruence, demo_recorded,
                           demo_bridge)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ActivationModel(demo_bridge), site.parent, max_chars=500)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/index.html"
    srv.should_exit = True
    thread.join(timeout=10)


def test_typing_a_text_shades_picked_darkest(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium(1360, 1600) as browser:
        open_page(browser, server + "#L2N892", "neuron", "L2N892")
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "live-text"))
        box = browser.find_element(By.ID, "live-text")
        box.clear()
        box.send_keys(TEXT)
        second = browser.find_element(By.ID, "live-text-b")
        second.send_keys("The walk ended. Then he walked an apple")
        browser.find_element(By.ID, "live-run").click()
        WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".live-row")) == 2)
        rows = browser.execute_script("""
            return Array.from(document.querySelectorAll('.live-row')).map(function (row) {
              var toks = Array.from(row.querySelectorAll('.live-tok'));
              var best = null, alpha = function (t) {
                var m = /rgba\\([^)]*,\\s*([0-9.]+)\\)/.exec(t.getAttribute('style') || ''); return m ? +m[1] : 0; };
              toks.forEach(function (t) {
                if (!t.classList.contains('bos') && (best === null || alpha(t) > alpha(best))) best = t; });
              return {darkest: best.textContent, tokens: toks.map(function (t) { return t.textContent; }),
                      preds: toks.map(function (t) { return t.dataset.pred; }), bos: toks[0].classList.contains('bos')};
            });""")
        first = rows[0]
        assert first["darkest"] == " picked", first
        assert first["bos"] and first["tokens"][0] == "<|endoftext|>"
        assert first["preds"][first["tokens"].index(" picked")] == " an"
        assert rows[1]["darkest"] != " picked" and " picked" not in rows[1]["tokens"]
        check_screenshot(browser, tmp_path / "serve.png")
        assert console_errors(browser) == []


def test_an_error_is_shown_on_one_line(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium(1360, 1200) as browser:
        open_page(browser, server + "#L2N892", "neuron", "L2N892")
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "live-text"))
        browser.execute_script("document.getElementById('live-text').removeAttribute('maxlength');"
                               "document.getElementById('live-text').value = 'x'.repeat(600);")
        browser.find_element(By.ID, "live-run").click()
        WebDriverWait(browser, 20).until(lambda d: "limit is 500" in d.find_element(By.ID, "live-status").text)
