"""`orca-argo render`: the committed chart files are exactly what the Hera templates render."""
import json

from chart_tools import read

from orca_steps import config
from orca_workflows import cli
from orca_workflows import templates_common as common
from orca_workflows.render import CHART_DIR, DEFAULT_NODE_MAP, FILES_DIR, render_files, site_configmaps, values


def test_committed_chart_files_are_not_stale(tmp_path):
    out = tmp_path / "chart" / "files"
    assert cli.main(["render", "--out", str(out)]) == 0
    rendered = sorted(p.relative_to(out.parent).as_posix() for p in out.parent.rglob("*") if p.is_file())
    assert rendered == sorted(render_files())
    for rel in rendered:
        assert read(out.parent / rel) == read(CHART_DIR / rel), f"{rel} is stale: run `orca-argo render`"
    committed = sorted(p.name for p in FILES_DIR.glob("*.yaml"))
    assert committed == sorted(p.name for p in out.glob("*.yaml"))  # no leftover template files


def test_values_come_from_the_site_config():
    site = config.site()
    v = values(site)
    # node_map stays empty in values.yaml (Helm would merge a site's map into it); the chart falls back
    # to the default node map file, written from the same SiteConfig
    assert v["site"] == {**json.loads(site.model_dump_json()), "node_map": {}}
    assert json.loads(render_files(site)[f"files/{DEFAULT_NODE_MAP}"]) == site.node_map
    assert f"{v['image']['repository']}:{v['image']['tag']}" == common.image()
    assert v["resources"]["wsclean"]["requests"]["cpu"] == str(site.wsclean_threads)
    assert v["cron"]["suspend"] is True


def test_site_configmaps_hold_the_config_and_one_lock_per_node():
    site = config.SiteConfig(node_map={"73MHz": "n1", "78MHz": "n2", "82MHz": "n1"}, dynamic_pool=["n3", "n2"])
    site_cm, locks = site_configmaps(site)
    assert site_cm["metadata"]["name"] == common.SITE_CONFIGMAP
    assert config.SiteConfig(**json.loads(site_cm["data"][common.SITE_CONFIG_KEY])) == site
    assert locks["metadata"]["name"] == common.NODE_LOCKS_CONFIGMAP
    assert locks["data"] == {"n1": "1", "n2": "1", "n3": "1"}


def test_render_follows_orca_config(tmp_path, monkeypatch):
    path = tmp_path / "site.json"
    path.write_text(json.dumps({"phase1_parallelism": 7, "archive_root": "/lustre/other/images",
                                "wsclean_threads": 12}))
    monkeypatch.setenv("ORCA_CONFIG", str(path))
    files = render_files()
    assert "parallelism: 7" in files["files/subband-pipeline.yaml"]
    assert "subPath: other/images" in files["files/subband-process.yaml"]
    assert json.loads(files["files/rendered-site.json"])["archive_root"] == "/lustre/other/images"
    assert "cpu: '12'" in files["values.yaml"]
