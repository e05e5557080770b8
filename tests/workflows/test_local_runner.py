"""The local runner on small hand-written Argo YAML whose pods run tiny shell commands.

Each test checks an Argo rule the pipeline relies on (order, fan-out limits, aggregation, retries,
continueOn, exit handlers, locks, child workflows) from the node phases, outputs and the start/end times
the runner records, and that anything it does not implement stops the run with the field's name.
"""
from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from orca_workflows.cli import main as cli_main
from orca_workflows.localrun import LocalRunError, LocalRunner, Unsupported
from orca_workflows.localrun.exprlang import evaluate
from orca_workflows.localrun.govaluate import evaluate_when
from orca_workflows.localrun.errors import ExpressionError


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def run(tmp_path: Path, text: str, target: str = "t", params: dict | None = None, **kw):
    files = [write(tmp_path, text)]
    runner = LocalRunner(files, tmp_path / "out", **kw)
    wf = runner.submit(target, params)
    runner.wait()
    return runner, wf


def by_display(wf) -> dict:
    return {n.display_name: n for n in wf.nodes.values()}


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


SH = "container: {image: alpine, command: [sh, -c]"


def test_dag_order_and_outputs(tmp_path):
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          arguments: {{parameters: [{{name: word, value: hello}}]}}
          templates:
          - name: main
            dag:
              tasks:
              - {{name: a, template: say, arguments: {{parameters: [{{name: x, value: "{{{{workflow.parameters.word}}}}"}}]}}}}
              - {{name: b, depends: a, template: say, arguments: {{parameters: [{{name: x, value: "b-{{{{tasks.a.outputs.parameters.out}}}}"}}]}}}}
              - {{name: c, dependencies: [a], template: say, arguments: {{parameters: [{{name: x, value: "c-{{{{tasks.a.outputs.result}}}}"}}]}}}}
              - {{name: d, depends: b && c, template: say, arguments: {{parameters: [{{name: x, value: "{{{{tasks.b.outputs.parameters.out}}}}+{{{{tasks.c.outputs.parameters.out}}}}"}}]}}}}
          - name: say
            inputs: {{parameters: [{{name: x}}]}}
            outputs: {{parameters: [{{name: out, valueFrom: {{path: /tmp/out}}}}]}}
            {SH}, args: ["sleep 0.2; printf '%s' '{{{{inputs.parameters.x}}}}' > /tmp/out; echo '{{{{inputs.parameters.x}}}}'"]}}
        """)
    assert wf.phase == "Succeeded"
    n = by_display(wf)
    assert n["d"].output_parameter("out") == "b-hello+c-hello"
    assert n["b"].started_at >= n["a"].finished_at and n["c"].started_at >= n["a"].finished_at
    assert n["d"].started_at >= max(n["b"].finished_at, n["c"].finished_at)
    assert abs(n["b"].started_at - n["c"].started_at) < 0.15  # b and c ran side by side
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert {x["display_name"] for x in record["workflows"][0]["nodes"]} >= {"a", "b", "c", "d"}


FANOUT = """
    apiVersion: argoproj.io/v1alpha1
    kind: WorkflowTemplate
    metadata: {name: t}
    spec:
      entrypoint: main
      templates:
      - name: main
        parallelism: 2
        dag:
          tasks:
          - name: gen
            template: gen
          - name: work
            depends: gen
            template: work
            withParam: "{{tasks.gen.outputs.result}}"
            continueOn: {failed: true}
            arguments: {parameters: [{name: i, value: "{{item.i}}"}, {name: wait, value: "{{item.wait}}"}]}
          - name: fanin
            depends: work
            template: echo
            arguments: {parameters: [{name: msg, value: "{{tasks.work.outputs.parameters.out}}"}]}
      - name: gen
        script:
          image: python
          command: [python3]
          source: |
            import json
            print(json.dumps([{"i": i, "wait": 0.5 - 0.08 * i} for i in range(6)]))
      - name: work
        inputs: {parameters: [{name: i}, {name: wait}]}
        outputs: {parameters: [{name: out, valueFrom: {path: /tmp/out}}]}
        container:
          image: alpine
          command: [sh, -c]
          args: ["sleep {{inputs.parameters.wait}}; test {{inputs.parameters.i}} != 3 || exit 7; echo -n v{{inputs.parameters.i}} > /tmp/out"]
      - name: echo
        inputs: {parameters: [{name: msg}]}
        container: {image: alpine, command: [echo, "{{inputs.parameters.msg}}"]}
    """


def test_fanout_parallelism_and_aggregation(tmp_path):
    runner, wf = run(tmp_path, FANOUT)
    n = by_display(wf)
    items = sorted((x for x in wf.nodes.values() if x.display_name.startswith("work(")), key=lambda x: x.loop_index)
    assert len(items) == 6
    assert max_overlap([(x.started_at, x.finished_at) for x in items]) == 2
    assert [x.phase for x in items] == ["Succeeded"] * 3 + ["Failed"] + ["Succeeded"] * 2
    assert n["work"].type == "TaskGroup" and n["work"].phase == "Failed"
    # Loop order although later items finish first; the failed child is left out.
    assert json.loads(n["fanin"].outputs["result"]) == ["v0", "v1", "v2", "v4", "v5"]
    assert wf.phase == "Succeeded"  # continueOn failed: the fan-in ran and the DAG succeeded


def test_depends_results_and_omitted_branch(tmp_path):
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          templates:
          - name: main
            dag:
              tasks:
              - {{name: bad, template: fail}}
              - {{name: loop, template: maybe, withItems: [0, 1], arguments: {{parameters: [{{name: code, value: "{{{{item}}}}"}}]}}}}
              - {{name: on-fail, depends: bad.Failed, template: ok}}
              - {{name: on-success, depends: bad.Succeeded, template: ok}}
              - {{name: any, depends: loop.AnySucceeded, template: ok}}
              - {{name: after-bad, depends: bad, template: ok}}
          - name: fail
            {SH}, args: ["exit 1"]}}
          - name: maybe
            inputs: {{parameters: [{{name: code}}]}}
            {SH}, args: ["exit {{{{inputs.parameters.code}}}}"]}}
          - name: ok
            {SH}, args: ["true"]}}
        """)
    n = by_display(wf)
    assert n["on-fail"].phase == "Succeeded"
    assert n["on-success"].phase == "Omitted"
    assert n["any"].phase == "Succeeded"
    assert n["after-bad"].phase == "Omitted"
    # An omitted leaf inherits the failure of its branch: the DAG fails (no continueOn on 'bad').
    assert wf.phase == "Failed"


def test_retries_backoff_and_policy(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          volumes: [{{name: state, hostPath: {{path: /state, type: Directory}}}}]
          templates:
          - name: main
            dag:
              tasks:
              - {{name: third-time, template: flaky, arguments: {{parameters: [{{name: key, value: a}}, {{name: limit, value: "3"}}]}}}}
              - {{name: gives-up, template: flaky, arguments: {{parameters: [{{name: key, value: b}}, {{name: limit, value: "1"}}]}}}}
              - {{name: on-error-only, template: strict}}
          - name: flaky
            inputs: {{parameters: [{{name: key}}, {{name: limit}}]}}
            retryStrategy: {{limit: "{{{{inputs.parameters.limit}}}}", retryPolicy: OnFailure, backoff: {{duration: "1s", factor: 2}}}}
            container:
              image: alpine
              command: [sh, -c]
              args: ["echo x >> /state/{{{{inputs.parameters.key}}}}; test $(wc -l < /state/{{{{inputs.parameters.key}}}}) -ge 3"]
              volumeMounts: [{{name: state, mountPath: /state}}]
          - name: strict
            retryStrategy: {{limit: 3, retryPolicy: OnError}}
            {SH}, args: ["exit 1"]}}
        """, volume_roots={"/state": state})
    n = by_display(wf)
    assert n["third-time"].phase == "Succeeded" and n["third-time"].type == "Retry"
    attempts = [wf.nodes[c] for c in n["third-time"].children]
    assert [a.phase for a in attempts] == ["Failed", "Failed", "Succeeded"]
    assert attempts[1].started_at - attempts[0].finished_at >= 0.95       # backoff 1 s
    assert attempts[2].started_at - attempts[1].finished_at >= 1.95       # then 2 s (factor 2)
    assert n["gives-up"].phase == "Failed" and len(n["gives-up"].children) == 2  # limit 1: two attempts
    assert len(n["on-error-only"].children) == 1                               # a Failed pod is no Error
    assert (state / "a").read_text().count("x") == 3


def test_retry_expression_skips_refused_inputs(tmp_path):
    """Our templates' retryStrategy.expression: exit 2 (refused input) is final, exit 1 is retried."""
    from orca_workflows.templates_common import NO_RETRY_EXPRESSION

    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          templates:
          - name: main
            dag:
              tasks:
              - {{name: refused, template: fail, arguments: {{parameters: [{{name: code, value: "2"}}]}}}}
              - {{name: crashed, template: fail, arguments: {{parameters: [{{name: code, value: "1"}}]}}}}
          - name: fail
            inputs: {{parameters: [{{name: code}}]}}
            retryStrategy: {{limit: 2, retryPolicy: Always, expression: "{NO_RETRY_EXPRESSION}"}}
            {SH}, args: ["exit {{{{inputs.parameters.code}}}}"]}}
        """)
    n = by_display(wf)
    assert n["refused"].phase == "Failed" and len(n["refused"].children) == 1
    assert n["crashed"].phase == "Failed" and len(n["crashed"].children) == 3


def test_exit_handler_sees_status_and_failures(tmp_path):
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          onExit: exit
          templates:
          - name: main
            dag:
              tasks: [{{name: boom, template: boom}}]
          - name: boom
            {SH}, args: ["exit 4"]}}
          - name: exit
            steps:
            - - {{name: report, template: report, when: "{{{{workflow.status}}}} != Succeeded"}}
              - {{name: never, template: report, when: "{{{{workflow.status}}}} == Succeeded"}}
          - name: report
            outputs: {{parameters: [{{name: seen, valueFrom: {{path: /tmp/seen}}}}]}}
            container:
              image: alpine
              command: [sh, -c]
              args: ["cat > /tmp/seen <<'EOF'\\n{{{{workflow.status}}}} {{{{workflow.failures}}}}\\nEOF"]
        """)
    assert wf.phase == "Failed"
    n = by_display(wf)
    assert n["never"].phase == "Skipped"
    status, failures = n["report"].output_parameter("seen").split(" ", 1)
    assert status == "Failed"
    # Argo quotes the JSON once more (operator.go: strconv.Quote), so it survives substitution
    assert failures.startswith('"[{\\"displayName\\":')
    assert any(f["displayName"] == "boom" and f["message"] == "main: Error (exit code 4)"
               for f in json.loads(json.loads(failures)))


def _times(wf, prefix: str) -> list[tuple[float, float]]:
    return [(x.started_at, x.finished_at) for x in wf.nodes.values()
            if x.type == "Pod" and x.display_name.startswith(prefix)]


def test_semaphore_and_mutex_never_exceeded(tmp_path):
    write(tmp_path, """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: limits}
        data: {nodes: "2"}
        """, "cm.yaml")
    text = f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          templates:
          - name: main
            dag:
              tasks:
              - {{name: sem, template: sem, withSequence: {{count: "6"}}}}
              - {{name: mtx, template: mtx, withItems: [a, b, c]}}
          - name: sem
            synchronization: {{semaphores: [{{configMapKeyRef: {{name: limits, key: nodes}}}}]}}
            {SH}, args: ["sleep 0.3"]}}
          - name: mtx
            synchronization: {{mutexes: [{{name: "queue-{{{{workflow.parameters.q}}}}"}}]}}
            {SH}, args: ["sleep 0.2"]}}
          arguments: {{parameters: [{{name: q, value: one}}]}}
        """
    runner = LocalRunner([write(tmp_path, text), tmp_path / "cm.yaml"], tmp_path / "out")
    first, second = runner.submit("t"), runner.submit("t")   # two workflows share the locks
    runner.wait()
    assert first.phase == second.phase == "Succeeded"
    assert max_overlap(_times(first, "sem(") + _times(second, "sem(")) == 2
    assert max_overlap(_times(first, "mtx(") + _times(second, "mtx(")) == 1
    holds = [h for h in runner.locks.holds if h.lock == "default/Mutex/queue-one"]
    assert len(holds) == 6 and all(h.released for h in holds)


CHILDREN = f"""
    apiVersion: argoproj.io/v1alpha1
    kind: WorkflowTemplate
    metadata: {{name: child}}
    spec:
      entrypoint: main
      arguments: {{parameters: [{{name: code, value: "0"}}]}}
      templates:
      - name: main
        {SH}, args: ["sleep 0.2; exit {{{{workflow.parameters.code}}}}"]}}
    ---
    apiVersion: argoproj.io/v1alpha1
    kind: WorkflowTemplate
    metadata: {{name: t}}
    spec:
      entrypoint: main
      templates:
      - name: main
        dag:
          tasks:
          - {{name: good, template: spawn, arguments: {{parameters: [{{name: code, value: "0"}}]}}}}
          - {{name: bad, template: spawn, arguments: {{parameters: [{{name: code, value: "3"}}]}}}}
          - {{name: hangs, template: spawn-no-failure, arguments: {{parameters: [{{name: code, value: "3"}}]}}}}
      - name: spawn
        inputs: {{parameters: [{{name: code}}]}}
        outputs: {{parameters: [{{name: child, valueFrom: {{jsonPath: "{{.metadata.name}}"}}}}]}}
        resource:
          action: create
          setOwnerReference: true
          successCondition: status.phase == Succeeded
          failureCondition: status.phase in (Failed, Error)
          manifest: |
            apiVersion: argoproj.io/v1alpha1
            kind: Workflow
            metadata:
              generateName: child-
              labels: {{orca/parent: "{{{{workflow.name}}}}"}}
            spec:
              workflowTemplateRef: {{name: child}}
              arguments: {{parameters: [{{name: code, value: "{{{{inputs.parameters.code}}}}"}}]}}
      - name: spawn-no-failure
        inputs: {{parameters: [{{name: code}}]}}
        resource:
          action: create
          successCondition: status.phase == Succeeded
          manifest: |
            apiVersion: argoproj.io/v1alpha1
            kind: Workflow
            metadata: {{generateName: child-}}
            spec:
              workflowTemplateRef: {{name: child}}
              arguments: {{parameters: [{{name: code, value: "{{{{inputs.parameters.code}}}}"}}]}}
    """


def test_child_workflows_success_and_failure_conditions(tmp_path):
    runner, wf = run(tmp_path, CHILDREN)
    n = by_display(wf)
    assert n["good"].phase == "Succeeded"
    child = runner.workflows[n["good"].output_parameter("child")]
    assert child.phase == "Succeeded" and child.parent is wf and child.labels["orca/parent"] == wf.name
    assert child.owner_references[0]["name"] == wf.name
    assert n["bad"].phase == "Failed" and "failure condition" in n["bad"].message
    assert runner.workflows[n["bad"].child_workflow].phase == "Failed"
    # Argo would wait forever; the runner says so instead of hanging.
    assert n["hangs"].phase == "Error" and "wait forever" in n["hangs"].message
    assert wf.phase == "Failed"


def test_volumes_map_paths_both_ways_and_nodes_are_recorded(tmp_path):
    fast = tmp_path / "fast"
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          nodeSelector: {{kubernetes.io/hostname: default-node}}
          volumes: [{{name: fast, hostPath: {{path: /fast/pipeline, type: DirectoryOrCreate}}}}]
          templates:
          - name: main
            dag:
              tasks:
              - {{name: write, template: write}}
              - {{name: read, depends: write, template: read,
                  arguments: {{parameters: [{{name: path, value: "{{{{tasks.write.outputs.parameters.path}}}}"}}]}}}}
          - name: write
            nodeSelector: {{kubernetes.io/hostname: lwacalim08}}
            outputs: {{parameters: [{{name: path, valueFrom: {{path: /tmp/path}}}}]}}
            container:
              image: alpine
              command: [sh, -c]
              args: ["mkdir -p /fast/x && echo data > /fast/x/f.txt && echo -n /fast/x/f.txt > /tmp/path && echo -n \\"$FASTDIR\\" > /fast/x/env.txt"]
              env: [{{name: FASTDIR, value: /fast/x}}]
              volumeMounts: [{{name: fast, mountPath: /fast}}]
          - name: read
            inputs: {{parameters: [{{name: path}}]}}
            outputs: {{parameters: [{{name: text, valueFrom: {{path: /tmp/text}}}}]}}
            container:
              image: alpine
              command: [sh, -c]
              args: ["cat {{{{inputs.parameters.path}}}} > /tmp/text"]
              volumeMounts: [{{name: fast, mountPath: /fast}}]
        """, volume_roots={"/fast": fast})
    assert wf.phase == "Succeeded", [(x.name, x.message) for x in wf.nodes.values()]
    n = by_display(wf)
    assert (fast / "pipeline" / "x" / "f.txt").read_text() == "data\n"
    assert (fast / "pipeline" / "x" / "env.txt").read_text() == str(fast / "pipeline" / "x")
    assert n["write"].output_parameter("path") == "/fast/x/f.txt"   # container path between pods
    assert n["read"].output_parameter("text") == "data"
    assert n["write"].host == "lwacalim08" and n["read"].host == "default-node"


def test_missing_directory_and_unmapped_host_path(tmp_path):
    text = """
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {name: t}
        spec:
          entrypoint: main
          volumes: [{name: lustre, hostPath: {path: /lustre/data, type: Directory}}]
          templates:
          - name: main
            container:
              image: alpine
              command: [ls, /lustre]
              volumeMounts: [{name: lustre, mountPath: /lustre, readOnly: true}]
        """
    runner, wf = run(tmp_path, text, volume_roots={"/lustre": tmp_path / "lustre"})
    assert wf.phase == "Error" and "does not exist" in wf.nodes[next(iter(wf.nodes))].message
    with pytest.raises(LocalRunError, match="hostPath /lustre/data has no local folder"):
        run(tmp_path, text)


def test_deadlines(tmp_path):
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          templates:
          - name: main
            activeDeadlineSeconds: 1
            {SH}, args: ["sleep 30"]}}
        """)
    node = next(iter(wf.nodes.values()))
    assert wf.phase == "Failed" and "deadline" in node.message
    assert node.finished_at - node.started_at < 10


def test_parameters_enum_and_missing(tmp_path):
    text = """
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {name: t}
        spec:
          entrypoint: main
          arguments: {parameters: [{name: mode, value: static, enum: [static, dynamic]}]}
          templates:
          - name: main
            container: {image: alpine, command: [echo, "{{workflow.parameters.mode}}"]}
        """
    with pytest.raises(LocalRunError, match="not one of its enum"):
        run(tmp_path, text, params={"mode": "sideways"})
    runner, wf = run(tmp_path, text, params={"mode": "dynamic"})
    assert next(iter(wf.nodes.values())).outputs["result"] == "dynamic"


def test_steps_when_and_outputs(tmp_path):
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          templates:
          - name: main
            outputs: {{parameters: [{{name: final, valueFrom: {{parameter: "{{{{steps.last.outputs.result}}}}"}}}}]}}
            steps:
            - - {{name: first, template: echo, arguments: {{parameters: [{{name: x, value: "73MHz"}}]}}}}
            - - {{name: skipped, template: echo, when: "'{{{{steps.first.outputs.result}}}}' == '18MHz'", arguments: {{parameters: [{{name: x, value: "no"}}]}}}}
              - {{name: last, template: echo, when: "'{{{{steps.first.outputs.result}}}}' == '73MHz'", arguments: {{parameters: [{{name: x, value: "yes"}}]}}}}
          - name: echo
            inputs: {{parameters: [{{name: x}}]}}
            container: {{image: alpine, command: [echo, "{{{{inputs.parameters.x}}}}"]}}
        """)
    n = by_display(wf)
    assert n["skipped"].phase == "Skipped" and n["last"].phase == "Succeeded"
    assert wf.nodes[next(iter(wf.nodes))].output_parameter("final") == "yes"


def test_unquoted_when_value_errors_as_on_a_cluster():
    assert evaluate_when("Failed != Succeeded") is True
    assert evaluate_when("'73MHz' == '73MHz' && true") is True
    assert evaluate_when("3 > 2.5") is True
    with pytest.raises(ExpressionError):
        evaluate_when("73MHz == 73MHz")


def test_expressions():
    env = {"inputs": {"parameters": {"n": "4", "list": '["a","b"]'}}}
    assert evaluate("asInt(inputs.parameters.n) * 2", env) == 8
    assert evaluate("len(fromJSON(inputs.parameters.list))", env) == 2
    assert evaluate("inputs.parameters.n == '4' ? 'four' : 'other'", env) == "four"
    assert evaluate("filter([1, 2, 3, 4], # > 2)", env) == [3, 4]
    with pytest.raises(Unsupported, match=r"sprig\.shuffle"):
        evaluate("sprig.shuffle('abc')", env)


@pytest.mark.parametrize("snippet, field", [
    ("    daemon: true\n", "templates[0].daemon"),
    ("    sidecars: [{name: s, image: x}]\n", "templates[0].sidecars"),
    ("    synchronization: {mutex: {name: x}}\n", "synchronization.mutex"),
    ("    memoize: {key: k, cache: {configMap: {name: c}}}\n", "templates[0].memoize"),
])
def test_unsupported_fields_fail_loudly(tmp_path, snippet, field):
    text = ("apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata: {name: t}\nspec:\n"
            "  entrypoint: main\n  templates:\n  - name: main\n" + snippet +
            "    container: {image: x, command: [echo]}\n")
    (tmp_path / "wf.yaml").write_text(text)
    with pytest.raises(Unsupported) as err:
        LocalRunner([tmp_path / "wf.yaml"], tmp_path / "out")
    assert field in str(err.value)


def test_unsupported_expression_function_stops_the_run(tmp_path):
    with pytest.raises(Unsupported, match=r"sprig\.randAlpha"):
        run(tmp_path, """
            apiVersion: argoproj.io/v1alpha1
            kind: WorkflowTemplate
            metadata: {name: t}
            spec:
              entrypoint: main
              templates:
              - name: main
                container: {image: x, command: [echo, "{{=sprig.randAlpha(4)}}"]}
            """)


def test_cli_run_local_table_and_exit_code(tmp_path, capsys):
    path = write(tmp_path, FANOUT)
    code = cli_main(["run-local", "t", "-t", str(path), "--out", str(tmp_path / "out"), "--progress", "plain"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "WORKFLOW" in out and "Succeeded" in out
    assert "work(3:i:3,wait:0.26) [work] on -: Failed" in err
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["workflows"][0]["phase"] == "Succeeded"
    assert yaml.safe_load((tmp_path / "out" / "run.json").read_text())  # plain JSON


def test_task_exit_hook_and_config_map_files(tmp_path):
    lustre = tmp_path / "lustre"
    lustre.mkdir()
    write(tmp_path, """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: site}
        data: {site.json: '{"archive_root": "/lustre/images"}'}
        """, "cm.yaml")
    text = f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          volumes:
          - {{name: lustre, hostPath: {{path: /lustre, type: Directory}}}}
          - {{name: site, configMap: {{name: site, items: [{{key: site.json, path: site.json}}]}}}}
          templates:
          - name: main
            dag:
              tasks:
              - name: work
                template: fail
                hooks: {{exit: {{template: report, arguments: {{parameters: [{{name: status, value: "{{{{tasks.work.status}}}}"}}]}}}}}}
              - {{name: after, depends: work.Failed, template: report, arguments: {{parameters: [{{name: status, value: after}}]}}}}
          - name: fail
            {SH}, args: ["exit 1"]}}
          - name: report
            inputs: {{parameters: [{{name: status}}]}}
            container:
              image: alpine
              command: [sh, -c]
              args: ["mkdir -p $(python3 -c 'import json; print(json.load(open(\\"/etc/orca/site.json\\"))[\\"archive_root\\"])') && echo {{{{inputs.parameters.status}}}} >> /lustre/images/status"]
              volumeMounts: [{{name: lustre, mountPath: /lustre}}, {{name: site, mountPath: /etc/orca, readOnly: true}}]
        """
    runner = LocalRunner([write(tmp_path, text), tmp_path / "cm.yaml"], tmp_path / "out", volume_roots={"/lustre": lustre})
    wf = runner.submit("t")
    runner.wait()
    n = by_display(wf)
    hook = n["work.onExit"]
    assert hook.phase == "Succeeded" and hook.id in n["work"].children
    # The hook ran before the dependent task, saw the task's status, and read local paths from the ConfigMap.
    assert (lustre / "images" / "status").read_text().split() == ["Failed", "after"]
    assert n["after"].started_at >= hook.finished_at


def test_exit_handler_deletes_running_children_by_label(tmp_path):
    start = time.time()
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: sleeper}}
        spec:
          entrypoint: main
          templates:
          - name: main
            {SH}, args: ["sleep 60"]}}
        ---
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          onExit: stop
          templates:
          - name: main
            dag:
              tasks:
              - {{name: spawn, template: spawn}}
              - {{name: boom, depends: spawn, template: boom}}
          - name: spawn
            resource:
              action: create
              manifest: |
                apiVersion: argoproj.io/v1alpha1
                kind: Workflow
                metadata: {{generateName: sleeper-, labels: {{orca/parent: "{{{{workflow.name}}}}"}}}}
                spec: {{workflowTemplateRef: {{name: sleeper}}}}
          - name: boom
            {SH}, args: ["exit 1"]}}
          - name: stop
            steps:
            - - name: delete
                template: delete
                when: "{{{{workflow.status}}}} != Succeeded"
          - name: delete
            resource:
              action: delete
              flags: [workflows, --selector, "orca/parent={{{{workflow.name}}}},workflows.argoproj.io/completed!=true"]
        """)
    children = [w for w in runner.workflows.values() if w.parent is wf]
    assert wf.phase == "Failed" and len(children) == 1
    child = children[0]
    assert child.deleted and child.phase == "Failed"
    assert time.time() - start < 30    # the 60 s pod was killed, not waited for
    assert "deleted 1 workflow" in by_display(wf)["delete"].message


def test_cron_workflow_runs_once_now_unless_suspended(tmp_path):
    cron = """
        apiVersion: argoproj.io/v1alpha1
        kind: CronWorkflow
        metadata: {name: nightly}
        spec:
          schedules: ["0 16 * * *"]
          suspend: SUSPEND
          workflowMetadata: {labels: {orca/run-label: nightly}}
          workflowSpec:
            workflowTemplateRef: {name: t}
            arguments: {parameters: [{name: x, value: from-cron}]}
        ---
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {name: t}
        spec:
          entrypoint: main
          arguments: {parameters: [{name: x, value: default}]}
          templates:
          - name: main
            container: {image: x, command: [echo, "{{workflow.parameters.x}} {{workflow.labels.orca/run-label}}"]}
        """
    with pytest.raises(LocalRunError, match="suspended"):
        run(tmp_path, cron.replace("SUSPEND", "true"), target="cronworkflow/nightly")
    runner, wf = run(tmp_path, cron.replace("SUSPEND", "false"), target="cronworkflow/nightly")
    assert wf.name.startswith("nightly-") and wf.phase == "Succeeded"
    assert next(iter(wf.nodes.values())).outputs["result"] == "from-cron nightly"


def test_live_progress_redraws_units(tmp_path):
    import io
    from orca_workflows.localrun.progress import Progress
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t, labels: {{}}}}
        spec:
          entrypoint: main
          templates:
          - name: main
            nodeSelector: {{kubernetes.io/hostname: lwacalim08}}
            metadata: {{labels: {{orca/subband: 73MHz, orca/lst: 14h, orca/obs-date: "2025-06-15"}}}}
            {SH}, args: ["true"]}}
        """)
    stream = io.StringIO()
    progress = Progress(runner, stream, live=True)
    progress.tick()
    progress.tick()
    text = stream.getvalue()
    assert text.count("\x1b[2K") == 8 and "\x1b[4F" in text      # 4 lines, drawn twice in place
    assert "73MHz 14h" in text and "lwacalim08" in text and "Succeeded" in text


def test_killed_runner_takes_its_pods_and_their_children_along(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    state = tmp_path / "state"
    state.mkdir()
    path = write(tmp_path, """
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {name: t}
        spec:
          entrypoint: main
          volumes: [{name: state, hostPath: {path: /state, type: Directory}}]
          templates:
          - name: main
            container:
              image: x
              command: [sh, -c, "sleep 300 & echo $! > /state/pid; wait"]
              volumeMounts: [{name: state, mountPath: /state}]
        """)
    runner = subprocess.Popen([sys.executable, "-m", "orca_workflows.cli", "run-local", "t", "-t", str(path),
                               "--volume-root", f"/state={state}", "--out", str(tmp_path / "out"), "--progress", "off"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "TMPDIR": str(tmp_path)})  # its scratch folder stays here
    deadline = time.time() + 30
    while not (state / "pid").is_file() and time.time() < deadline:
        time.sleep(0.1)
    grandchild = int((state / "pid").read_text())
    os.kill(runner.pid, signal.SIGKILL)    # no clean-up code runs in the runner
    runner.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(grandchild, signal.SIGKILL)
        pytest.fail("a pod's child process outlived the killed runner")
