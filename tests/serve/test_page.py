"""The page of ``realm-jax serve`` in a real headless browser (Debian's chromium, driven by
selenium through its chromedriver): type the demo question, see the answer and the highlighted
span, replace the block through the edit form, see the new answer.

Skipped, saying so, where chromium or chromedriver is missing (``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them). ``REALM_JAX_SCREENSHOT=path.png`` saves the page
after the edit (``docs/serve_page.png`` is made so).
"""

import os
import shutil

import pytest

from realm_jax.benchmarks.serve_load import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
TOKEN = "page-test-token"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="no chromium / chromedriver (apt-get install chromium "
                       "chromium-driver)"),
]


@pytest.fixture
def browser(monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must not look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,1100", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait_text(driver, element_id, text, timeout=60, exact=True):
    """Waits until #element_id reads ``text`` (or, not exact, contains it)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def reads(d):
        shown = d.find_element(By.ID, element_id).text
        return shown == text if exact else text in shown

    WebDriverWait(driver, timeout).until(reads, message=f"#{element_id} never read {text!r}")


def test_the_page_answers_highlights_and_follows_an_edit(run_copy, tmp_path, browser):
    from selenium.webdriver.common.by import By

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with ServerProcess(run_copy, 4, ("--allow-edits", "--token-file", str(token_file))) as server:
        browser.get(server.url + "/")
        _wait_text(browser, "run-info", "step 30", exact=False)
        browser.find_element(By.ID, "question").send_keys("what is the capital of Amber?")
        browser.find_element(By.ID, "ask").click()
        _wait_text(browser, "answer", "London")
        items = browser.find_elements(By.CSS_SELECTOR, "#evidence li")
        assert len(items) == 5
        marks = browser.find_elements(By.CSS_SELECTOR, "#evidence mark")
        assert [m.text for m in marks] == ["London"]
        assert "The capital of Amber is" in items[0].text and "Amber" in items[0].text
        widths = [b.get_attribute("style") for b in
                  browser.find_elements(By.CSS_SELECTOR, "#evidence .bar > div")]
        assert len(widths) == 5 and all("width:" in w for w in widths)

        assert browser.find_element(By.ID, "edit-section").is_displayed()
        browser.find_element(By.ID, "edit-id").send_keys("0")
        browser.find_element(By.ID, "edit-title").send_keys("Amber")
        browser.find_element(By.ID, "edit-text").send_keys("The capital of Amber is Oslo.")
        browser.find_element(By.ID, "edit-token").send_keys(TOKEN)
        browser.find_element(By.ID, "edit-submit").click()
        _wait_text(browser, "answer", "Oslo")  # the page asks again after the edit
        marks = browser.find_elements(By.CSS_SELECTOR, "#evidence mark")
        assert [m.text for m in marks] == ["Oslo"]
        assert "corpus version 1" in browser.find_element(By.ID, "edit-status").text
        _wait_text(browser, "run-info", "corpus version 1", exact=False)
        if path := os.environ.get("REALM_JAX_SCREENSHOT"):
            browser.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
            browser.save_screenshot(path)


def test_without_edits_the_form_is_hidden_and_errors_show(facts_run, browser):
    from selenium.webdriver.common.by import By

    with ServerProcess(facts_run, 1) as server:
        browser.get(server.url + "/")
        _wait_text(browser, "run-info", "live blocks", exact=False)
        assert not browser.find_element(By.ID, "edit-section").is_displayed()
        browser.find_element(By.ID, "question").send_keys("   ")
        browser.execute_script("document.getElementById('question').required = false")
        browser.find_element(By.ID, "ask").click()
        _wait_text(browser, "status", "question: empty")
