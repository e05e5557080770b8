"""The offline validator: the chart passes, and it catches what a cluster (or a run) would reject."""
import copy

import pytest
import yaml
from chart_tools import templates

from orca_workflows import validate as v
from orca_workflows.render import FILES_DIR, site_configmaps
from orca_steps import config

DOCS = v.load_documents(sorted(FILES_DIR.glob("*.yaml")))
CONFIGMAPS = site_configmaps(config.site())


def test_the_rendered_files_validate_cleanly():
    assert v.validate_documents(DOCS + CONFIGMAPS) == []


def test_strict_schema_rules():
    schema = v.make_strict({"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "string"}}},
        "keep": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"c": {}}},
        "n": {"x-kubernetes-int-or-string": True}}})
    assert schema["additionalProperties"] is False and schema["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["keep"]
    check = v.jsonschema.Draft7Validator(schema)
    assert check.is_valid({"n": 2}) and check.is_valid({"n": "2"}) and check.is_valid({"keep": {"zz": 1}})
    assert not check.is_valid({"n": 2.5}) and not check.is_valid({"a": {"b": "x", "c": 1}})


def mutated(doc_name: str, change) -> list[dict]:
    docs = copy.deepcopy(DOCS)
    doc = next(d for d in docs if d["metadata"]["name"] == doc_name)
    change(doc, templates(doc))
    return docs + CONFIGMAPS


def task(t, template, name):
    return next(x for x in t[template]["dag"]["tasks"] if x["name"] == name)


def set_arg(call, name, value):
    next(p for p in call["arguments"]["parameters"] if p["name"] == name)["value"] = value


def edit_manifest(t, name, edit):
    manifest = yaml.safe_load(t[name]["resource"]["manifest"])
    edit(manifest)
    t[name]["resource"]["manifest"] = yaml.safe_dump(manifest)


CASES = {
    "unknown field": ("subband-process", lambda d, t: t["concat"]["container"].update(imagePullPolcy="x"),
                      "'imagePullPolcy' was unexpected"),
    "bad enum": ("subband-prepare-ms", lambda d, t: t["prepare-ms"]["retryStrategy"].update(retryPolicy="Sometimes"),
                 "'Sometimes' is not one of"),
    "wrong type": ("subband-pipeline", lambda d, t: t["hour"].update(parallelism="many"),
                   "'many' is not of type 'integer'"),
    "CEL: continueOn with depends": (
        "subband-pipeline", lambda d, t: task(t, "hour", "collect").update(depends="prepare", dependencies=None),
        "cannot use both 'depends' and 'dependencies'"),
    "dangling template": ("subband-pipeline", lambda d, t: task(t, "hour", "collect").update(template="colect-ms"),
                          "template 'colect-ms' does not exist"),
    "dangling templateRef": (
        "subband-pipeline", lambda d, t: task(t, "hour", "prepare")["templateRef"].update(template="prepare"),
        "subband-prepare-ms has no template 'prepare'"),
    "dangling output": (
        "subband-pipeline",
        lambda d, t: set_arg(task(t, "hour", "process"), "ms_paths", "@{{tasks.collect.outputs.parameters.ms_lst}}"),
        "task 'collect' has no output 'ms_lst'"),
    "output of a task that is not upstream": (
        "subband-pipeline",
        lambda d, t: set_arg(task(t, "hour", "collect"), "work_dir", "{{tasks.process.outputs.parameters.x}}"),
        "no task 'process' in scope"),
    "dangling workflow parameter": (
        "subband-pipeline", lambda d, t: t["collect-ms"]["container"]["args"].__setitem__(
            6, "{{workflow.parameters.min_fraction}}"), "no workflow argument 'min_fraction'"),
    "dangling input": ("subband-pipeline", lambda d, t: t["unit-report"]["container"]["args"].__setitem__(
        2, "{{inputs.parameters.workdir}}"), "the template has no input 'workdir'"),
    "item outside a loop": ("subband-pipeline", lambda d, t: set_arg(task(t, "hour", "collect"), "node", "{{item}}"),
                            "outside a withParam/withItems loop"),
    "missing argument": ("subband-pipeline",
                         lambda d, t: task(t, "hour", "process")["arguments"]["parameters"].pop(),
                         "input 'node' of template 'process-subband' is not given"),
    "exit-only global outside the exit handler": (
        "subband-pipeline", lambda d, t: set_arg(task(t, "hour", "collect"), "node", "{{workflow.status}}"),
        "only set in the exit handler"),
    "child manifest: unknown argument": (
        "subband-hours", lambda d, t: edit_manifest(t, "run-hour", lambda m: m["spec"]["arguments"][
            "parameters"].append({"name": "subbnd", "value": "x"})),
        "argument 'subbnd' is not an argument of WorkflowTemplate"),
    "child manifest: unknown field": (
        "subband-dispatch", lambda d, t: edit_manifest(t, "run-unit", lambda m: m["spec"].update(onexit="x")),
        "'onexit' was unexpected"),
    "missing ConfigMap": ("subband-pipeline", lambda d, t: t["hour"]["synchronization"]["semaphores"][0][
        "configMapKeyRef"].update(name="orca-node-lockz"), "semaphore ConfigMap 'orca-node-lockz' is not defined"),
    "missing onExit": ("subband-hours", lambda d, t: d["spec"].update(onExit="exit"),
                       "onExit 'exit' is not a template"),
    "metric: output the template lacks": (
        "subband-pipeline", lambda d, t: t["collect-ms"]["metrics"]["prometheus"][1]["gauge"].update(
            value="{{outputs.parameters.n_drop}}"), "the template has no output 'n_drop'"),
    "metric: unknown variable": (
        "subband-process", lambda d, t: t["science-images"]["metrics"]["prometheus"][0]["gauge"].update(
            value="{{durations}}"), "{{durations}} is not a reference"),
    "metric: unknown field": (
        "subband-pipeline", lambda d, t: t["unit-report"]["metrics"]["prometheus"][1]["counter"].update(valu="1"),
        "'valu' was unexpected"),
    "bad label": ("subband-hours", lambda d, t: d["metadata"].update(labels={"orca/x": "not ok!"}),
                  "is not a valid label value"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_validator_catches(case):
    doc_name, change, expected = CASES[case]
    problems = v.validate_documents(mutated(doc_name, change))
    assert any(expected in p for p in problems), problems


def test_validate_command(tmp_path, capsys):
    from orca_workflows import cli

    assert cli.main(["validate"]) == 0 and capsys.readouterr().out.strip().endswith("0 problem(s)")
    broken = copy.deepcopy(next(d for d in DOCS if d["metadata"]["name"] == "subband-process"))
    templates(broken)["archive"]["retryStrategy"]["retryPolicy"] = "Never"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all(DOCS[:0] + [broken]))
    assert cli.main(["validate", str(path)]) == 1 and "'Never' is not one of" in capsys.readouterr().out
