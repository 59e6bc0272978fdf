"""The page's 看 Inspect tab in a real headless Chromium (test_page.py's server and browser): a typed poem gives
one row per chosen cell with a box per character, each box's title the gates; the study's presets and typed
cells change the rows; the poem just written is offered; pasted markup stays text; no console errors. Skipped
where test_page.py skips (no Chromium), unless REQUIRE_BROWSER is set."""
import pytest

from test_page import base_url, browser, poem_lines, wait  # noqa: F401  (the fixtures, shared)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

CHUNWANG = "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。"


def cell_rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#inspect-grid .inspect-row.cells")


def inspect(driver, poem, cells=""):
    box = driver.find_element(By.ID, "inspect-text")
    box.clear()
    box.send_keys(poem)
    field = driver.find_element(By.ID, "inspect-cells")
    field.clear()
    field.send_keys(cells)
    driver.find_element(By.ID, "inspect-button").click()


def test_inspect_tab_rows_boxes_and_gates(browser, base_url):  # noqa: F811
    browser.get(base_url)
    browser.find_element(By.ID, "tab-inspect").click()
    assert browser.find_element(By.ID, "write").get_attribute("hidden") is not None
    wait(browser, lambda d: len(cell_rows(d)) >= 1)                    # the placeholder poem, read at once
    inspect(browser, CHUNWANG, "5, 300")
    wait(browser, lambda d: [r.get_attribute("data-cell") for r in cell_rows(d)] == ["5", "300"])
    for row in cell_rows(browser):
        boxes = row.find_elements(By.CSS_SELECTOR, ".box")
        assert "".join(b.text for b in boxes) == CHUNWANG
        title = boxes[3].get_attribute("title")
        assert title.startswith("河") and all(f" {g} = " in title for g in ("c", "i", "f", "o"))
        assert boxes[3].value_of_css_property("background-color").startswith("rgb")
    probs = browser.find_elements(By.CSS_SELECTOR, "#inspect-grid .inspect-row.probs .box")
    assert len(probs) == len(CHUNWANG) and "p = " in probs[0].get_attribute("title")
    Select(browser.find_element(By.ID, "inspect-layer")).select_by_value("1")
    Select(browser.find_element(By.ID, "inspect-state")).select_by_value("h")
    browser.find_element(By.ID, "inspect-button").click()
    wait(browser, lambda d: "layer 1 of 2, h_t" in d.find_element(By.ID, "inspect-source").text)
    options = browser.find_elements(By.CSS_SELECTOR, "#inspect-preset option")
    if len(options) > 1:                                               # the study's presets, when shipped
        Select(browser.find_element(By.ID, "inspect-preset")).select_by_index(1)
        wanted = browser.find_element(By.ID, "inspect-cells").get_attribute("value").split(",")
        wait(browser, lambda d: [r.get_attribute("data-cell") for r in cell_rows(d)] == wanted)
    inspect(browser, CHUNWANG, "9999")
    wait(browser, lambda d: "not a cell" in d.find_element(By.ID, "inspect-error").text)


def test_the_poem_just_written_is_inspected(browser, base_url):  # noqa: F811
    browser.get(base_url + "?start=日&form=5&lines=4&seed=2")
    wait(browser, lambda d: len(poem_lines(d)) == 4)
    written = "".join(poem_lines(browser))
    browser.find_element(By.ID, "tab-inspect").click()
    browser.find_element(By.ID, "inspect-written").click()
    wait(browser, lambda d: cell_rows(d) and "".join(b.text for b in cell_rows(d)[0].find_elements(By.CSS_SELECTOR, ".box")) == written)
    browser.find_element(By.ID, "tab-write").click()
    assert browser.find_element(By.ID, "inspect").get_attribute("hidden") is not None
    assert browser.find_element(By.ID, "write").get_attribute("hidden") is None


def test_markup_stays_text_and_no_console_errors(browser, base_url):  # noqa: F811
    browser.get(base_url)
    browser.find_element(By.ID, "tab-inspect").click()
    wait(browser, lambda d: len(cell_rows(d)) >= 1)
    inspect(browser, "<img src=x onerror=alert(1)>")
    wait(browser, lambda d: "'<'" in d.find_element(By.ID, "inspect-error").text)
    assert not browser.find_elements(By.CSS_SELECTOR, "#inspect img")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]
              and "/api/inspect" not in e["message"]]                   # the 400s the tests asked for
    assert errors == [], errors


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
