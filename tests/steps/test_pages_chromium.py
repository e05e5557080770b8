"""The QA page and the night dashboard in a real headless browser (Chromium from Debian): they render,
every link resolves and every image loads. The unit's products come from the real steps (flux-check,
movies with ffmpeg, qa-summary, archive, run-report) on synthetic images.

The check runs inside the page: a copy of it, next to it, with a script that waits for the load, tests
each image (complete, natural width > 0) and fetches each link (file:// reads allowed for this browser
only). A copy with one broken link and one broken image must be caught, or the check proves nothing.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from orca_steps import config, flux_check, movies, qa_summary, run_report, work_queue
from orca_steps.archive import archive_products
from orca_steps.discover import WorkUnit
from orca_steps.products import MOVIE_FOLDER, PARTIAL_MARKER, movie_name
from orca_steps.sim.images import write_sky_image
from orca_steps.skyimage import load_calibrators, spectrum_jy
from test_movies import write_snapshots
from test_qa_summary import FREQ, KW, TIME, ZEN, src

CHECK = """<script>
window.addEventListener('load', async () => {
  const imgs = [...document.images];
  const badImages = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('alt'));
  const hrefs = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')).filter(h => !h.startsWith('#'));
  const badLinks = [];
  for (const h of hrefs) {
    const ok = await new Promise(done => {
      const x = new XMLHttpRequest();
      x.open('GET', h); x.responseType = 'arraybuffer';
      x.onload = () => done(x.response !== null && x.response.byteLength > 0);
      x.onerror = () => done(false);
      x.send();
    });
    if (!ok) badLinks.push(h);
  }
  document.body.setAttribute('data-check', JSON.stringify({images: imgs.length, badImages, links: hrefs.length, badLinks}));
});
</script>"""


def chromium_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after it loaded (and its scripts ran) in headless Chromium, a fresh profile."""
    exe = shutil.which("chromium")
    assert exe, "chromium (Debian package chromium) is needed: setup installs it (system_tools.tsv, group dev)"
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={profile}", "--allow-file-access-from-files",
                           "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120).stdout


def chromium_check(page: Path, tmp: Path) -> tuple[dict, str]:
    """Load ``page`` in headless Chromium; (the in-page check's verdict, the rendered DOM)."""
    probe = page.with_name(f"_check_{page.name}")
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    try:
        dom = chromium_dom(probe, tmp / f"profile-{page.stem}")
    finally:
        probe.unlink()
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found, f"the page's check did not run in Chromium; DOM starts: {dom[:300]!r}"
    return json.loads(html.unescape(found.group(1))), dom


def unit_work(work: Path) -> None:
    """A processed unit's products: science images, flux check, snapshots and their movies, a cube link."""
    cals = [src((c["ra_deg"], c["dec_deg"]), spectrum_jy(c, FREQ)) for c in load_calibrators()]
    deep = write_sky_image(work / "I" / "deep" / "73MHz-I-Deep-Taper-Robust-0.75-20250615_100000-image.pbcorr.fits",
                           cals, ZEN, TIME, FREQ, noise_jy=0.2, seed=1, **KW)
    write_sky_image(work / "V" / "deep" / "73MHz-V-Taper-Deep-20250615_100000-image.pbcorr.fits", [], ZEN, TIME,
                    FREQ, noise_jy=0.2, stokes="V", seed=2, **KW)
    write_sky_image(work / "I" / "10min" / "73MHz-I-Taper-10min-20250615_095500-image.pbcorr.fits", cals, ZEN,
                    TIME, FREQ, noise_jy=0.4, seed=3, **KW)
    write_sky_image(work / "snapshots" / "73MHz-Pilot-Snapshot-20250615_095000-I-image.fits", cals, ZEN, TIME,
                    FREQ, noise_jy=1.0, seed=4, **KW)
    flux_check.run(flux_check.Options(deep_image=str(deep), noise_images=[], work_dir=str(work)))
    write_snapshots(work, 10)
    movies.run(movies.Options(work_dir=str(work), subband="73MHz"))


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root = tmp_path_factory.mktemp("night")
    site = config.SiteConfig(runs_root=str(root / "runs"), archive_root=str(root / "images"))
    done = root / "fast" / "done"
    unit_work(done)
    qa = qa_summary.run(qa_summary.Options(work_dir=str(done), subband="73MHz", lst_label="14h",
                                           obs_date="2025-06-15", run_label="night"))
    archive_products(done, config.archive_dir(site.archive_root, "14h", "2025-06-15", "night", "73MHz"))
    failed = root / "fast" / "failed"
    (failed / "QA").mkdir(parents=True)
    (failed / PARTIAL_MARKER).write_text(json.dumps({"failed_step": "aoflagger", "error": "step aoflagger failed: boom"}))
    qa_summary.run(qa_summary.Options(work_dir=str(failed), subband="78MHz", lst_label="15h"))
    archive_products(failed, config.archive_dir(site.archive_root, "15h", "2025-06-15", "night", "78MHz"),
                     partial="step aoflagger failed: boom")
    pending = WorkUnit(id="82MHz_14h_2025-06-15", subband="82MHz", lst_label="14h", obs_date="2025-06-15",
                       node="n", work_dir="/fast/x", ms_list_file="/l/x.json", n_ms=3)
    work_queue.create_or_resume(work_queue.queue_path(site, "night"), "night", [pending])
    failures = [{"displayName": "hour(1:15h)", "templateName": "subband-pipeline", "message": "child failed"}]
    with pytest.raises(run_report.UnitsFailed, match="82MHz 14h"):  # the night fails, naming its unfinished unit
        run_report.run_report(run_report.Options(workflow="night-abc", run_label="night", status="Failed",
                                                 failures=json.dumps(failures), dynamic_run_label="night"), site)
    report = json.loads((Path(site.runs_root) / "night" / "reports" / "night-abc.json").read_text())
    return root, site, qa, Path(report["dashboard"])


def test_the_qa_page_shows_sky_pictures_and_links_the_movies(night, tmp_path):
    root, site, qa, _ = night
    page = Path(config.archive_dir(site.archive_root, "14h", "2025-06-15", "night", "73MHz")) / "QA" / "index.html"
    text = page.read_text()
    for title in ("Deep Stokes I", "Deep Stokes V", "10-minute Stokes I", "Snapshot Stokes I"):
        assert f"alt=\"{title}" in text, title
    marked = re.findall(r"(\d+) measured sources marked", text)
    ok_rows = sum(r.split(",")[-1].strip() == "ok" for r in (root / "fast" / "done" / "QA" / "flux_check.csv").read_text().splitlines()[1:])
    assert ok_rows > 0 and marked[0] == str(ok_rows)
    for kind in ("I_Raw", "I_Filtered", "V_Raw"):
        assert f"href='../{MOVIE_FOLDER}/{movie_name('73MHz', kind)}'" in text
    verdict, dom = chromium_check(page, tmp_path)
    assert verdict["images"] >= 5 and verdict["badImages"] == [], verdict  # 4 sky pictures and the plots
    assert verdict["links"] == 3 and verdict["badLinks"] == [], verdict
    assert "Sky pictures" in dom and "Overall:" in dom


def test_the_night_dashboard_grid_links_every_unit_page(night, tmp_path):
    root, site, qa, dashboard = night
    assert dashboard == Path(site.runs_root) / "night" / "dashboard-night-abc.html"
    verdict, dom = chromium_check(dashboard, tmp_path)
    assert verdict["links"] == 2 and verdict["badLinks"] == [], verdict
    outcomes = dict(re.findall(r"<td class=\"cell\" data-outcome=\"([^\"]+)\"[^>]*>(?:<a href=\"([^\"]*)\")?", dom))
    assert outcomes == {qa.status: "../../images/14h/2025-06-15/night/73MHz/QA/index.html",
                        "partial": "../../images/15h/2025-06-15/night/78MHz/QA/index.html", "pending": ""}
    assert "step aoflagger failed: boom" in dom and "child failed" in dom  # failure reasons, Argo nodes
    report = json.loads((Path(site.runs_root) / "night" / "reports" / "night-abc.json").read_text())
    assert report["dashboard"] == str(dashboard)
    index = Path(site.runs_root) / "dashboards" / "night-abc.html"  # what the Argo UI link opens
    landed = chromium_dom(index, tmp_path / "profile-index")
    assert "<title>Night night (night-abc)</title>" in landed and "id=\"grid\"" in landed


def test_the_browser_check_catches_a_broken_link_and_image(night, tmp_path):
    _, _, _, dashboard = night
    broken = dashboard.with_name("broken.html")
    broken.write_text(dashboard.read_text().replace("</h1>", "</h1><a href='nowhere/index.html'>x</a>"
                                                              "<img alt='gone' src='gone.png'>"))
    verdict, _ = chromium_check(broken, tmp_path)
    assert verdict["badLinks"] == ["nowhere/index.html"] and verdict["badImages"] == ["gone"]
