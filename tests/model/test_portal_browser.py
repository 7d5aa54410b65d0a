"""The portal at `/` in a real headless browser (issue 19): Debian's chromium driven by Selenium
submits every form on the page with real faces from the data root and checks the answer the page
shows: boxes and landmarks drawn over the photo (detect, mask-face, identify), the de-blurred image
and the synthesised grid shown, verify's distance against its threshold, and the gallery's enrol /
list / identify / delete flow. API keys are set: the key goes in the page's key field; without it a
form shows the 401. A screenshot of each answer is saved under build/portal-screenshots/ (or
$FACELAB_PORTAL_SCREENSHOTS); the folder is printed at the end of the module.

The served models are the session's shared fits (task_fit), nothing is trained for this file.
`scripts/install_browser.sh` (run by `make test`) installs chromium and chromium-driver with apt-get;
without them the tests skip and say so.
"""

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.realdata

TASKS = ("detect", "mask-face", "deblur", "synth", "verify")
ADMIN_KEY = "portal-admin-key-" + "p" * 24
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("FACELAB_PORTAL_SCREENSHOTS") or Path(__file__).resolve().parents[2] / "build" / "portal-screenshots")
ANSWER_WAIT_S = 120


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            return f"{path} not installed (bash scripts/install_browser.sh installs Debian's chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (bash scripts/install.sh installs requirements.lock)"
    return None


@pytest.fixture(scope="module")
def faces(data_root, tmp_path_factory) -> dict:
    """Real faces: a UTKFace photo, and ORL faces as PNG (the browser shows no PGM)."""
    utk = sorted((data_root / "utkface" / "images").glob("*.jpg"))
    if not utk or not (data_root / "orl_faces").is_dir():
        pytest.skip(f"UTKFace or ORL faces not found under {data_root}")
    folder = tmp_path_factory.mktemp("portal-faces")

    def orl(person: int, index: int) -> str:
        path = folder / f"s{person}-{index}.png"
        Image.open(data_root / "orl_faces" / f"s{person}" / f"{index}.pgm").convert("RGB").save(path)
        return str(path)

    return {"photo": str(utk[0]), "photo2": str(utk[1]), "orl": orl}


@pytest.fixture(scope="module")
def portal(ray_local, data_root, task_fit, tmp_path_factory):
    """The gateway over the shared fits of TASKS and a fresh gallery, with an admin key set."""
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from ray import serve

    from facelab.access import load_keys
    from serve.app import GalleryModel, Gateway, TaskModel

    stores = {task: task_fit(task).store for task in TASKS}
    keys = tmp_path_factory.mktemp("portal-keys") / "keys"
    keys.write_text(f"admin:{ADMIN_KEY}\n")
    gallery = tmp_path_factory.mktemp("portal-gallery") / "gallery.sqlite"
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = Gateway.bind({task: TaskModel.options(name=task).bind(task, store) for task, store in stores.items()},
                       GalleryModel.bind(str(gallery), stores["verify"]), {"keys": load_keys(keys, environ={})})
    serve.run(app, name="facelab", route_prefix="/")
    yield f"http://127.0.0.1:{port}/"
    serve.shutdown()


@pytest.fixture(scope="module")
def browser(portal, request):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2200"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except Exception as exc:  # e.g. a chromedriver that does not match the browser
        pytest.skip(f"headless chromium did not start: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    yield driver
    driver.quit()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nportal screenshots: {SCREENSHOTS}")


class Page:
    """The portal page in the browser: fill a form by its title, send it, wait for its answer."""

    def __init__(self, driver, url: str, key: str | None):
        from selenium.webdriver.common.by import By

        self.driver, self.by = driver, By
        driver.get(url)
        field = driver.find_element(By.ID, "key")
        field.clear()
        field.send_keys(key or " ")  # a blank key: the input event stores it (trimmed to nothing)
        self.sent: list[str] = []

    def titles(self) -> list[str]:
        return [h.text for h in self.driver.find_elements(self.by.CSS_SELECTOR, "form.call h3")]

    def form(self, title: str):
        return self.driver.find_element(self.by.XPATH, f"//form[h3[text()='{title}']]")

    def submit(self, title: str, shot: str, files: dict | None = None, fields: dict | None = None):
        from selenium.webdriver.support.ui import WebDriverWait

        form = self.form(title)
        for field in form.find_elements(self.by.CSS_SELECTOR, "input[type=file]"):  # a picker adds to its files
            self.driver.execute_script("arguments[0].value = ''", field)
        for name, paths in (files or {}).items():
            paths = [paths] if isinstance(paths, str) else paths
            form.find_element(self.by.CSS_SELECTOR, f"input[type=file][name={name}]").send_keys("\n".join(paths))
        for name, value in (fields or {}).items():
            field = form.find_element(self.by.CSS_SELECTOR, f"input[name={name}]")
            field.clear()
            field.send_keys(str(value))
        form.find_element(self.by.TAG_NAME, "button").click()
        out = form.find_element(self.by.CLASS_NAME, "out")
        WebDriverWait(self.driver, ANSWER_WAIT_S).until(lambda _: out.get_attribute("data-status") not in ("", "pending"))
        self.driver.execute_script("arguments[0].scrollIntoView()", form)
        form.screenshot(str(SCREENSHOTS / f"{shot}.png"))
        self.sent.append(title)
        return out

    def status(self, out) -> str:
        return out.get_attribute("data-status")

    def all(self, out, css: str):
        return out.find_elements(self.by.CSS_SELECTOR, css)

    def image_loaded(self, img) -> bool:
        return self.driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)


def _json(out):
    """The answer's JSON, as the page shows it under "JSON"."""
    return json.loads(out.find_element("css selector", "pre.json").get_attribute("textContent"))


def _boxes(page: Page, out) -> list[int]:
    return [int(c.get_attribute("data-boxes")) for c in page.all(out, "canvas.photo")]


def test_every_form_shows_its_drawn_answer(browser, portal, faces):
    page = Page(browser, portal, ADMIN_KEY)
    photo, orl = faces["photo"], faces["orl"]

    out = page.submit("POST /detect", "detect", files={"image": photo})
    assert page.status(out) == "200", out.text
    canvas = page.all(out, "canvas.photo")
    assert len(canvas) == 1 and int(canvas[0].get_attribute("data-boxes")) >= 1, out.text
    assert int(canvas[0].get_attribute("data-landmarks")) >= 5  # detect's landmarks drawn too

    out = page.submit("POST /mask-face", "mask-face", files={"image": photo})
    assert page.status(out) == "200", out.text
    assert _boxes(page, out) == [1] and "masktype" in out.text

    out = page.submit("POST /deblur", "deblur", files={"image": photo})
    assert page.status(out) == "200", out.text
    answers = page.all(out, "img.answer")
    assert len(answers) == 1 and page.image_loaded(answers[0]) and len(page.all(out, "canvas.photo")) == 1  # beside the input

    out = page.submit("POST /synth", "synth", fields={"n": 8, "seed": 3})
    assert page.status(out) == "200", out.text
    grid = page.all(out, "img.answer")
    assert len(grid) == 1 and page.image_loaded(grid[0])

    out = page.submit("POST /verify", "verify", files={"image_a": orl(7, 1), "image_b": orl(7, 4)})
    assert page.status(out) == "200", out.text
    verdict = page.all(out, ".verdict")[0]
    assert float(verdict.get_attribute("data-distance")) < float(verdict.get_attribute("data-threshold"))
    assert "the same person" in verdict.text

    out = page.submit("POST /gallery/subjects (enrol)", "gallery-enrol",
                      files={"images": [orl(1, k) for k in (1, 2, 3)]}, fields={"subject_id": "s1"})
    assert page.status(out) == "200", out.text
    assert _boxes(page, out) == [0, 0, 0]  # the three uploads shown
    page.submit("POST /gallery/subjects (enrol)", "gallery-enrol-2", files={"images": [orl(2, k) for k in (1, 2)]},
                fields={"subject_id": "s2"})

    out = page.submit("GET /gallery/subjects (list)", "gallery-list")
    assert page.status(out) == "200", out.text
    listed = [td.text for td in page.all(out, "table[data-name=subjects] td[data-field=subject_id]")]
    assert listed == ["s1", "s2"], out.text
    assert [s["faces"] for s in _json(out)["subjects"]] == [3, 2]

    out = page.submit("POST /identify", "identify", files={"image": orl(1, 9)}, fields={"k": 2})
    assert page.status(out) == "200", out.text
    matches = [td.text for td in page.all(out, "table[data-name=matches] td[data-field=subject_id]")]
    assert matches == ["s1", "s2"] and _boxes(page, out) == [1], out.text
    distances = [m["distance"] for m in _json(out)["matches"]]
    assert distances[0] < distances[1]

    out = page.submit("DELETE /gallery/subjects/{subject_id}", "gallery-delete", fields={"subject_id": "s1"})
    assert page.status(out) == "200" and "s1" in out.text, out.text
    out = page.submit("GET /gallery/subjects (list)", "gallery-list-after-delete")
    assert [td.text for td in page.all(out, "table[data-name=subjects] td[data-field=subject_id]")] == ["s2"], out.text

    assert set(page.titles()) == set(page.sent), "every form on the page is submitted"


def test_without_a_key_a_form_shows_the_401(browser, portal, faces):
    page = Page(browser, portal, key=None)
    out = page.submit("POST /detect", "no-key-401", files={"image": faces["photo"]})
    assert page.status(out) == "401"
    assert "401" in out.text and "API key" in out.text, out.text


def test_blank_fields_are_ignored_and_several_images_drawn(browser, portal, faces):
    page = Page(browser, portal, ADMIN_KEY)
    # image left blank, two files in `images`: a batch, each answer drawn over its own photo
    out = page.submit("POST /detect", "detect-batch", files={"images": [faces["photo"], faces["photo2"]]})
    assert page.status(out) == "200", out.text
    assert len(_boxes(page, out)) == 2 and min(_boxes(page, out)) >= 1, out.text
    out = page.submit("POST /synth", "synth-defaults")  # n and seed blank: their defaults
    assert page.status(out) == "200" and page.image_loaded(page.all(out, "img.answer")[0]), out.text
    out = page.submit("POST /verify", "verify-missing-image", files={"image_a": faces["photo"]})
    assert page.status(out) == "422" and "image_b" in out.text, out.text  # an error is shown, not "..."
