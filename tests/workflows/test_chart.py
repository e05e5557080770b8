"""The Helm chart with a real helm (v4): lint, template, strict validation, golden file, values, RBAC."""
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_tools import by_kind_name, documents, helm, helm_template, templates

from orca_steps import config
from orca_steps.night_dashboard import index_path
from orca_workflows import templates_common as common
from orca_workflows import validate as v
from orca_workflows.render import CHART_DIR, FILES_DIR, REPO_ROOT, site_configmaps

GOLDEN = REPO_ROOT / "tests" / "workflows" / "golden" / "orca-pipeline.yaml"
ARGO_KINDS = {"WorkflowTemplate", "CronWorkflow"}


@pytest.fixture(scope="module")
def rendered() -> str:
    return helm_template().stdout


@pytest.fixture(scope="module")
def objects(rendered) -> dict:
    return by_kind_name(documents(rendered))


def test_helm_lint_passes():
    proc = subprocess.run([helm(), "lint", "--strict", str(CHART_DIR)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_rendered_argo_object_validates(objects):
    docs = list(objects.values())
    assert {k for k, _ in objects} == ARGO_KINDS | {"ConfigMap", "ServiceAccount", "Role", "RoleBinding"}
    assert sum(k in ARGO_KINDS for k, _ in objects) == 6
    assert v.validate_documents(docs) == []


def test_chart_matches_the_golden_file(rendered):
    assert rendered == GOLDEN.read_text(), (
        f"the rendered chart changed; review it and update the golden file with\n  {helm()} template orca "
        f"charts/orca-pipeline --namespace orca > tests/workflows/golden/orca-pipeline.yaml")


def test_argo_files_reach_the_cluster_unchanged_but_for_site_values(objects):
    """.Files.Get keeps Argo's {{...}}: each object equals its rendered file up to what values set."""
    for path in sorted(FILES_DIR.glob("*.yaml")):
        (doc,) = v.load_documents([path])
        out = json.loads(json.dumps(objects[(doc["kind"], doc["metadata"]["name"])]))
        assert out["metadata"].pop("labels")["app.kubernetes.io/name"] == "orca-pipeline"
        for tmpl in out["spec"].get("templates", []):
            if "container" in tmpl:
                assert tmpl["container"].pop("imagePullPolicy") == "IfNotPresent"
                tmpl.pop("affinity", None)   # the site's nodes (test_unpinned_lustre_pods_stay_on_site_nodes)
        assert out == doc, path.name


def test_site_configmaps_and_node_locks_come_from_the_values(objects):
    for expected in site_configmaps(config.site()):
        got = objects[("ConfigMap", expected["metadata"]["name"])]["data"]
        if expected["metadata"]["name"] == common.SITE_CONFIGMAP:
            assert json.loads(got[common.SITE_CONFIG_KEY]) == json.loads(expected["data"][common.SITE_CONFIG_KEY])
        else:
            assert got == expected["data"]


def test_least_privilege_rbac_for_the_pods(objects):
    role = objects[("Role", common.SERVICE_ACCOUNT)]
    assert role["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"],
         "verbs": ["create", "get", "list", "watch", "delete"]},   # no patch: nothing patches workflows
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]
    binding = objects[("RoleBinding", common.SERVICE_ACCOUNT)]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": common.SERVICE_ACCOUNT, "namespace": "orca"}]
    assert binding["roleRef"]["name"] == common.SERVICE_ACCOUNT
    for (kind, _), doc in objects.items():
        if kind == "WorkflowTemplate":
            assert doc["spec"]["serviceAccountName"] == common.SERVICE_ACCOUNT


def test_site_values_reach_the_templates():
    out = by_kind_name(documents(helm_template(
        "--set", "image.tag=9.9.9", "--set", "site.archive_root=/lustre/other/images",
        "--set", "site.phase1_parallelism=7", "--set", "site.node_map.73MHz=lwacalim10",
        "--set-string", "resources.prepare-ms.requests.cpu=2", "--set", "cron.suspend=false",
        "--set", "cron.parameters.bp_table=/lustre/cal/73MHz.B",
        "--set", "cron.parameters.xy_table=/lustre/cal/73MHz.Xf").stdout))
    assert v.validate_documents(list(out.values())) == []
    for (kind, name), doc in out.items():
        if kind != "WorkflowTemplate":
            continue
        for tmpl in doc["spec"]["templates"]:
            if "container" in tmpl:
                c = tmpl["container"]
                assert c["image"] == f"{common.IMAGE_REPOSITORY}:9.9.9"
                archive = [m for m in c.get("volumeMounts", []) if m.get("subPath", "").endswith("images")]
                assert all(m["mountPath"] == "/lustre/other/images" and m["subPath"] == "other/images"
                           for m in archive)
    assert templates(out[("WorkflowTemplate", "subband-pipeline")])["hour"]["parallelism"] == 7
    prepare = templates(out[("WorkflowTemplate", "subband-prepare-ms")])["prepare-ms"]
    assert prepare["container"]["resources"]["requests"]["cpu"] == "2"
    assert "lwacalim10" in out[("ConfigMap", common.NODE_LOCKS_CONFIGMAP)]["data"]
    site = json.loads(out[("ConfigMap", common.SITE_CONFIGMAP)]["data"][common.SITE_CONFIG_KEY])
    assert site["node_map"] == {"73MHz": "lwacalim10"}   # a site's node map replaces the default whole
    cron = out[("CronWorkflow", "orca-nightly")]["spec"]
    assert cron["suspend"] is False
    assert {p["name"]: p["value"] for p in cron["workflowSpec"]["arguments"]["parameters"]}["bp_table"] == \
        "/lustre/cal/73MHz.B"


def test_phase2_site_data_and_resources_by_kind_come_from_values():
    """A site sets its AOFlagger strategy, catalogues and overwrite in values (no code), and the resources of
    Phase 2's WSClean pods apart from its bookkeeping pods."""
    out = by_kind_name(documents(helm_template(
        "--set", "site.aoflagger_strategy=/lustre/ref/LWA_opt_GH1.lua", "--set", "site.archive_overwrite=true",
        "--set", "site.transient_catalog=/lustre/ref/labels.csv", "--set-string", "resources.wsclean.requests.cpu=32",
        "--set-string", "resources.small.requests.cpu=50m").stdout))
    site = json.loads(out[("ConfigMap", common.SITE_CONFIGMAP)]["data"][common.SITE_CONFIG_KEY])
    assert (site["aoflagger_strategy"], site["archive_overwrite"], site["transient_catalog"]) == (
        "/lustre/ref/LWA_opt_GH1.lua", True, "/lustre/ref/labels.csv")
    process = templates(out[("WorkflowTemplate", "subband-process")])
    cpu = {name: t["container"]["resources"]["requests"]["cpu"] for name, t in process.items() if "container" in t}
    assert {n for n, c in cpu.items() if c == "32"} == {"pilot-snapshots", "science-images", "cube", "clean-snapshots"}
    assert cpu["provenance"] == cpu["qa-summary"] == cpu["preflight"] == "50m"
    assert cpu["concat"] == common.resource_table()["phase2-data"]["requests"]["cpu"]
    proc = helm_template("--set", "site.archive_overwrite=maybe", check=False)
    assert proc.returncode != 0 and "archive_overwrite" in proc.stderr   # values.schema.json: a boolean


@pytest.mark.parametrize("setting, message", [("site.archive_root=/data/images", "must lie under /lustre/"),
                                              ("site.nvme_root=/lustre/nvme", "must lie under /fast/")])
def test_roots_off_the_node_mounts_are_refused(setting, message):
    proc = helm_template("--set", setting, check=False)
    assert proc.returncode != 0 and message in proc.stderr


def test_a_site_node_map_replaces_the_default_whole(tmp_path):
    # Helm merges maps key by key: with the 15 defaults in values.yaml, a 3-subband site kept all 15
    # subbands on lwacalim* nodes it does not have, and subband "all" pinned pods there.
    site_file = tmp_path / "site.yaml"
    site_file.write_text("site:\n  node_map: {73MHz: nodeA, 78MHz: nodeB, 82MHz: nodeA}\n"
                         "  dynamic_pool: [nodeA, nodeB]\n")
    text = helm_template("-f", str(site_file)).stdout
    out = by_kind_name(documents(text))
    site = json.loads(out[("ConfigMap", common.SITE_CONFIGMAP)]["data"][common.SITE_CONFIG_KEY])
    assert site["node_map"] == {"73MHz": "nodeA", "78MHz": "nodeB", "82MHz": "nodeA"}
    assert out[("ConfigMap", common.NODE_LOCKS_CONFIGMAP)]["data"] == {"nodeA": "1", "nodeB": "1"}
    assert "lwacalim" not in text
    assert config.SiteConfig(**site).node_for("78MHz") == "nodeB"   # what the pods read is a valid site


def _unpinned_lustre_pods(out):
    for (kind, _), doc in out.items():
        if kind == "WorkflowTemplate":
            for tmpl in doc["spec"]["templates"]:
                if "container" in tmpl and not tmpl.get("nodeSelector") and tmpl.get("volumes"):
                    yield tmpl


def test_unpinned_lustre_pods_stay_on_site_nodes(objects, tmp_path):
    # hostPath /lustre (type Directory) fails on a node without Lustre: discover, plan-unit, the queue
    # steps and run-report would wait out their deadlines and retries there.
    pods = list(_unpinned_lustre_pods(objects))
    assert {t["name"] for t in pods} >= {"discover", "plan-unit", "queue-claim", "queue-finish", "run-report"}
    nodes = sorted(set(config.site().node_map.values()) | set(config.site().dynamic_pool))
    for tmpl in pods:
        (term,) = tmpl["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term == {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}
    site_file = tmp_path / "site.yaml"
    site_file.write_text("site:\n  node_map: {73MHz: nodeA}\n  dynamic_pool: [nodeB]\n")
    for tmpl in _unpinned_lustre_pods(by_kind_name(documents(helm_template("-f", str(site_file)).stdout))):
        term = tmpl["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["nodeA", "nodeB"]


@pytest.mark.parametrize("settings, message", [
    (["cron.suspend=false"], "bp_table"),                                  # a nightly run without cal tables
    (["cron.suspend=false", "cron.parameters.bp_table=/lustre/b"], "xy_table"),
    (["cron.workflowTemplate=subband-dispatch"], "dynamic_run_label"),     # Argo would reject every run
    (["cron.workflowTemplate=subband-other"], "workflowTemplate"),
    (["site.node_map.99MHz=nodeA"], "99MHz"),                              # not a processed subband
    (["site.nvme_rot=/fast/x"], "nvme_rot"),                                # a misspelt key
    (["cron.parameters.run_label=a/b"], "run_label"),
])
def test_values_schema_refuses_values_that_would_fail_on_the_cluster(settings, message):
    args = [a for kv in settings for a in ("--set", kv)]
    proc = helm_template(*args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_values_schema_accepts_an_enabled_cron_with_its_tables_and_a_dispatch_label():
    helm_template("--set", "cron.suspend=false", "--set", "cron.parameters.bp_table=/lustre/b",
                  "--set", "cron.parameters.xy_table=/lustre/x", "--set", "cron.workflowTemplate=subband-dispatch",
                  "--set", "cron.parameters.dynamic_run_label=nightly")


def test_argo_ui_links_to_the_night_dashboard_when_the_runs_are_served():
    assert ("ConfigMap", "orca-argo-ui-links") not in by_kind_name(documents(helm_template().stdout))
    out = by_kind_name(documents(helm_template("--set", "argoUi.runsUrl=https://lwa.example.org/runs/").stdout))
    links = yaml.safe_load(out[("ConfigMap", "orca-argo-ui-links")]["data"]["links"])
    assert links == [{"name": "Night dashboard", "scope": "workflow",
                      "url": "https://lwa.example.org/runs/dashboards/${metadata.name}.html"}]
    site = config.SiteConfig(runs_root="/lustre/x/runs")  # the page the link opens is where run-report puts it
    assert index_path(site, "night-abc") == Path("/lustre/x/runs/dashboards/night-abc.html")
