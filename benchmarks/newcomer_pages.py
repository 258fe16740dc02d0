#!/usr/bin/env python3
"""The pages a newcomer opens (issue 28), in headless Chromium, made by the `refinery` of a
venv (a fresh one from the wheel): the review page of opencv-doc's photos (a picture clicked
large, flickered with its keeper, a flip kept across a reload) and the serve page of their
index (browse, a picture clicked for more like it). Prints what each step shows and saves a
screenshot of each into --shots, to be looked at. Works on copies; needs Debian's chromium and
chromium-driver, and selenium in the venv that runs this script.

    python benchmarks/newcomer_pages.py /tmp/fresh/bin/refinery --shots /tmp/shots
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
PHOTOS = ("aloeL.jpg", "aloeR.jpg", "baboon.jpg", "basketball1.png", "basketball2.png", "left11.jpg", "left14.jpg")


def browser() -> Any:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"))


def review_page(driver: Any, page: Path, shots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 30)
    driver.get(page.as_uri())
    wait.until(lambda d: d.execute_script("return document.documentElement.dataset.firstPageMs"))
    print("review page:", len(driver.find_elements(By.CSS_SELECTOR, "section.group")), "groups")
    for keeper in driver.find_elements(By.CSS_SELECTOR, "figure.tile.keeper .reason"):
        print("  keeper says:", keeper.text)
    removed = driver.find_element(By.CSS_SELECTOR, 'figure.tile.remove[data-path="basketball2.png"]')
    print("  basketball2.png evidence:", removed.find_element(By.CSS_SELECTOR, ".scores").text)
    removed.find_element(By.CSS_SELECTOR, ".pics img").click()
    wait.until(lambda d: d.execute_script("return document.getElementById('large').naturalWidth") > 0)
    width = driver.execute_script("return document.getElementById('large').naturalWidth")
    print("  clicked: shows", driver.find_element(By.ID, "large-caption").text, f"at {width} px")
    driver.save_screenshot(str(shots / "review_large.png"))
    driver.find_element(By.ID, "flicker").click()
    wait.until(lambda d: "keeper" in d.find_element(By.ID, "large-caption").text)
    print("  flicker:", driver.find_element(By.ID, "large-caption").text)
    driver.save_screenshot(str(shots / "review_flicker.png"))
    driver.find_element(By.ID, "flicker").click()
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    flip = driver.find_element(By.CSS_SELECTOR, 'figure.tile[data-path="basketball2.png"] button.keep-too')
    flip.click()
    driver.refresh()
    wait.until(lambda d: d.execute_script("return document.documentElement.dataset.firstPageMs"))
    after = driver.find_element(By.CSS_SELECTOR, 'figure.tile[data-path="basketball2.png"]')
    print("  after a reload, basketball2.png:", after.get_attribute("class"))
    driver.save_screenshot(str(shots / "review_reloaded.png"))


def serve_page(driver: Any, url: str, shots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 30)
    driver.get(url)
    driver.find_element(By.NAME, "browse").click()
    wait.until(lambda d: d.find_element(By.ID, "page").text.startswith("page 1"))
    shown = driver.find_elements(By.CSS_SELECTOR, "#grid figure.clickable")
    print("serve page: browse shows", len(shown), "pictures;", driver.find_element(By.ID, "status").text)
    driver.save_screenshot(str(shots / "serve_browse.png"))
    baboon = next(f for f in shown if f.find_element(By.CLASS_NAME, "path").text == "baboon.jpg")
    baboon.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#grid figure.hit"))
    hits = driver.find_elements(By.CSS_SELECTOR, "#grid figure.hit")
    print("  baboon.jpg clicked, first results:", [h.find_element(By.CLASS_NAME, "path").text for h in hits[:3]])
    print("  status:", driver.find_element(By.ID, "status").text)
    driver.save_screenshot(str(shots / "serve_more_like.png"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("refinery", help="the refinery executable of the venv to try")
    parser.add_argument("--shots", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    args.shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "photos").mkdir()
        for name in PHOTOS:
            shutil.copy2(args.data / name, work / "photos" / name)
        shutil.copy2(args.data / "aloeL.jpg", work / "photos" / "aloeL_copy.jpg")
        run = [args.refinery, "dedup", "photos", "--report", "r.json", "--html", "review.html"]
        subprocess.run(run, cwd=work, check=True, capture_output=True)
        subprocess.run([args.refinery, "index", "photos", "--out", "photos.index"], cwd=work, check=True)
        port = free_port()
        server = subprocess.Popen([args.refinery, "serve", "photos.index", "--port", str(port)], cwd=work)
        driver = browser()
        try:
            review_page(driver, work / "review.html", args.shots)
            time.sleep(2)  # the server is up by now; it says so on its first line
            serve_page(driver, f"http://127.0.0.1:{port}/", args.shots)
        finally:
            driver.quit()
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
