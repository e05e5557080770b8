"""Rules where the local runner follows Argo v4.1.2's controller (file:line in argoproj/argo-workflows at
v4.1.2), each on a small hand-written workflow whose pods run shell commands."""
from __future__ import annotations

import time

import pytest
from test_local_runner import SH, by_display, run, write

from orca_workflows.localrun import LocalRunner, Unsupported


def test_recursion_stops_at_argo_stack_depth(tmp_path):
    # controller.go maxAllowedStackDepth = 100; operator.go executeTemplate errors the call that reaches it
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: loop
          templates:
          - name: loop
            steps: [[{{name: again, template: loop}}]]
        """)
    loops = [n for n in wf.nodes.values() if n.template == "loop" and n.type == "Steps"]
    errors = [n for n in wf.nodes.values() if n.phase == "Error"]
    assert len(loops) == 99
    assert len(errors) == 1 and errors[0].message.startswith("Maximum recursion depth exceeded")
    assert wf.phase == "Failed"


def test_max_duration_is_a_deadline_from_the_first_attempt(tmp_path):
    # operator.go processNodeRetries: maxDuration counts from the first attempt's start and becomes the
    # deadline of later attempts' pods (workflowpod.go getDeadline)
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: work
          templates:
          - name: work
            retryStrategy: {{limit: 5, retryPolicy: Always, backoff: {{duration: "500ms", maxDuration: "4s"}}}}
            {SH}, args: ["sleep 3; exit 1"]}}
        """)
    root = wf.nodes[next(iter(wf.nodes))]
    attempts = sorted((n for n in wf.nodes.values() if n.retried), key=lambda n: n.started_at)
    assert len(attempts) == 2
    assert attempts[1].finished_at - attempts[1].started_at < 1.5   # killed at the deadline, not after 3 s
    assert root.phase == "Failed" and root.message == "Max duration limit exceeded"


def test_continue_on_failed_does_not_cover_an_error_child(tmp_path):
    # steps.go executeStepGroup judges each expanded child: continueOn.failed lets a Failed child pass,
    # not an Error one (here: an input outside its enum)
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          templates:
          - name: main
            steps:
            - - {{name: work, template: work, withItems: [bad, "1"], continueOn: {{failed: true}},
                  arguments: {{parameters: [{{name: code, value: "{{{{item}}}}"}}]}}}}
            - - {{name: after, template: ok}}
          - name: work
            inputs: {{parameters: [{{name: code, enum: ["0", "1"]}}]}}
            {SH}, args: ["exit {{{{inputs.parameters.code}}}}"]}}
          - name: ok
            {SH}, args: ["true"]}}
        """)
    phases = sorted(n.phase for n in wf.nodes.values() if n.display_name.startswith("work("))
    assert phases == ["Error", "Failed"]
    assert "after" not in by_display(wf)
    assert wf.phase == "Failed"


def test_missing_semaphore_key_errors_the_node_and_the_exit_handler_runs(tmp_path):
    write(tmp_path, """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: locks}
        data: {node-a: "1"}
        """, "cm.yaml")
    text = f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          onExit: bye
          templates:
          - name: main
            dag: {{tasks: [{{name: pinned, template: pinned}}]}}
          - name: pinned
            synchronization: {{semaphores: [{{configMapKeyRef: {{name: locks, key: node-b}}}}]}}
            {SH}, args: ["true"]}}
          - name: bye
            {SH}, args: ["true"]}}
        """
    runner = LocalRunner([write(tmp_path, text), tmp_path / "cm.yaml"], tmp_path / "out")
    wf = runner.submit("t")
    runner.wait()
    nodes = by_display(wf)
    assert nodes["pinned"].phase == "Error" and "node-b" in nodes["pinned"].message
    assert nodes[f"{wf.name}.onExit"].phase == "Succeeded"
    assert wf.phase == "Error"


LOCKED = """
    apiVersion: argoproj.io/v1alpha1
    kind: Workflow
    metadata: {{generateName: {name}-}}
    spec:
      entrypoint: main
      priority: {priority}
      templates:
      - name: main
        synchronization: {{mutexes: [{mutexes}]}}
        container: {{image: alpine, command: [sh, -c], args: ["sleep {sleep}"]}}
    """


def _submit(runner, tmp_path, name, priority, mutexes, sleep):
    path = write(tmp_path, LOCKED.format(name=name, priority=priority, mutexes=mutexes, sleep=sleep), f"{name}.yaml")
    wf = runner.submit(str(path))
    time.sleep(0.3)   # distinct creation times, and the holder is in before the waiters
    return wf


def test_lock_waiters_by_priority_then_creation_time(tmp_path):
    # multi_throttler.go priorityQueue.Less: higher spec.priority first, then the earlier creation time
    write(tmp_path, "", "none.yaml")
    runner = LocalRunner([tmp_path / "none.yaml"], tmp_path / "out")
    holder = _submit(runner, tmp_path, "holder", 0, "{name: m}", 1.5)
    low_old = _submit(runner, tmp_path, "low-old", 0, "{name: m}", 0.1)
    low_new = _submit(runner, tmp_path, "low-new", 0, "{name: m}", 0.1)
    high_new = _submit(runner, tmp_path, "high-new", 5, "{name: m}", 0.1)
    runner.wait()
    order = [h.holder.rsplit("-", 1)[0] for h in sorted(runner.locks.holds, key=lambda h: h.acquired)]
    assert order == [holder.name, high_new.name, low_old.name, low_new.name]


def test_several_locks_are_taken_all_or_none(tmp_path):
    # sync_manager.go tryAcquireImpl: a holder takes all its locks at once or none of them
    write(tmp_path, "", "none.yaml")
    runner = LocalRunner([tmp_path / "none.yaml"], tmp_path / "out")
    b_holder = _submit(runner, tmp_path, "b-holder", 0, "{name: b}", 1.5)
    both = _submit(runner, tmp_path, "both", 0, "{name: a}, {name: b}", 0.1)
    runner.wait()
    holds = {(h.holder.rsplit("-", 1)[0], h.lock): h for h in runner.locks.holds}
    b_released = holds[(b_holder.name, "default/Mutex/b")].released
    assert holds[(both.name, "default/Mutex/a")].acquired >= b_released
    assert both.phase == "Succeeded"


def test_failed_exit_handler_sets_the_phase_and_message(tmp_path):
    # operator.go: a succeeded workflow whose exit handler failed is Failed with the handler's message
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          onExit: bye
          templates:
          - name: main
            {SH}, args: ["true"]}}
          - name: bye
            {SH}, args: ["exit 3"]}}
        """)
    assert wf.phase == "Failed" and wf.message == "main: Error (exit code 3)"   # operator.go:1864-1868


def test_a_pods_termination_message_ends_its_message_and_a_failed_dag_root_has_none(tmp_path):
    # operator.go:1864-1868: "main: Error (exit code N): <termination message>"; dag.go:378 marks a failed
    # DAG without a message, and a failed workflow takes its root's (operator.go:545, 566)
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          templates:
          - name: main
            dag: {{tasks: [{{name: says, template: says}}, {{name: quiet, template: quiet}}]}}
          - name: says
            {SH}, args: ["printf 'why: /tmp is gone' > /dev/termination-log; exit 2"]}}
          - name: quiet
            {SH}, args: ["echo in the log only; exit 1"]}}
        """)
    n = by_display(wf)
    assert n["says"].message == "main: Error (exit code 2): why: /tmp is gone"   # container paths stay
    assert n["quiet"].message == "main: Error (exit code 1)"
    assert wf.phase == "Failed" and wf.message == ""


def test_a_message_from_the_logs_is_refused(tmp_path):
    # FallbackToLogsOnError puts the log's tail in the message, argoexec's own lines included: not local
    with pytest.raises(Unsupported, match="terminationMessagePolicy"):
        run(tmp_path, f"""
            apiVersion: argoproj.io/v1alpha1
            kind: WorkflowTemplate
            metadata: {{name: t}}
            spec:
              entrypoint: main
              templates:
              - name: main
                container: {{image: alpine, command: [sh, -c, "exit 1"], terminationMessagePolicy: FallbackToLogsOnError}}
            """)


def test_looped_step_runs_every_item_then_fails(tmp_path):
    # What subband-hours' chain relies on: without continueOn, an item that fails does not stop the later
    # items of its loop (failFast is off for steps; operator.go checkParallelism), the step group fails
    # once all have run (steps.go executeStepGroup).
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: chain
          templates:
          - name: chain
            parallelism: 1
            steps:
            - - {{name: hour, template: hour, withItems: ["0", "1", "0"],
                  arguments: {{parameters: [{{name: code, value: "{{{{item}}}}"}}]}}}}
            - - {{name: after, template: hour, arguments: {{parameters: [{{name: code, value: "0"}}]}}}}
          - name: hour
            inputs: {{parameters: [{{name: code}}]}}
            {SH}, args: ["exit {{{{inputs.parameters.code}}}}"]}}
        """)
    hours = sorted((n for n in wf.nodes.values() if n.display_name.startswith("hour(")), key=lambda n: n.loop_index)
    assert [n.phase for n in hours] == ["Succeeded", "Failed", "Succeeded"]
    assert all(a.finished_at <= b.started_at for a, b in zip(hours, hours[1:]))   # one at a time, in order
    assert "after" not in by_display(wf) and wf.phase == "Failed"


def test_an_argument_over_128_kib_arrives_as_a_file(tmp_path):
    # cmd/argoexec/commands/emissary.go: above MaxEnvVarLen an argument becomes @/tmp/argo_arg_<i>.txt
    big = "x" * (128 * 1024 + 1)
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          arguments: {{parameters: [{{name: big, value: "{big}"}}]}}
          templates:
          - name: main
            outputs: {{parameters: [{{name: seen, valueFrom: {{path: /tmp/seen}}}}]}}
            container:
              image: alpine
              command: [sh, -c, 'case "$1" in @*) wc -c < "${{1#@}}" > /tmp/seen;; *) echo inline > /tmp/seen;; esac', sh]
              args: ["{{{{workflow.parameters.big}}}}", small]
        """)
    (node,) = [n for n in wf.nodes.values() if n.type == "Pod"]
    assert node.phase == "Succeeded" and node.output_parameter("seen").strip() == str(len(big))


def test_a_tasks_exit_hook_runs_when_the_night_is_cut_short(tmp_path):
    # exit_handler.go:23: an exit hook runs unless the shutdown is a Terminate (ShouldExecute(true)); the
    # nights hang stop-children on one this way. Here the workflow's deadline stops the task.
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          activeDeadlineSeconds: 1
          templates:
          - name: main
            dag: {{tasks: [{{name: work, template: work, hooks: {{exit: {{template: bye}}}}}}]}}
          - name: work
            {SH}, args: ["sleep 30"]}}
          - name: bye
            {SH}, args: ["sleep 0.5"]}}
        """)
    n = by_display(wf)
    assert n["work"].phase == "Failed" and n["work.onExit"].phase == "Succeeded"
    assert wf.phase == "Failed"


def test_a_failed_child_keeps_its_outputs_but_the_aggregate_leaves_it_out(tmp_path):
    # postmain.go:42-48 saves a pod's result and output parameters whatever main's exit code and
    # taskresult.go:128-132 puts them on its node; the loop's aggregate takes Succeeded children only
    # (operator.go:3762, processAggregateNodeOutputs)
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
              - {{name: gen, template: gen, withItems: ["a", "b", "c"], continueOn: {{failed: true}},
                  arguments: {{parameters: [{{name: x, value: "{{{{item}}}}"}}]}}}}
              - {{name: use, template: use, dependencies: [gen], arguments: {{parameters: [
                  {{name: p, value: "{{{{tasks.gen.outputs.parameters.p}}}}"}},
                  {{name: r, value: "{{{{tasks.gen.outputs.result}}}}"}}]}}}}
          - name: gen
            inputs: {{parameters: [{{name: x}}]}}
            outputs: {{parameters: [{{name: p, valueFrom: {{path: /tmp/p}}}}]}}
            {SH}, args: ["echo {{{{inputs.parameters.x}}}}; echo p-{{{{inputs.parameters.x}}}} > /tmp/p; test {{{{inputs.parameters.x}}}} != b"]}}
          - name: use
            inputs: {{parameters: [{{name: p}}, {{name: r}}]}}
            outputs: {{parameters: [{{name: seen, valueFrom: {{path: /tmp/seen}}}}]}}
            {SH}, args: ["echo '{{{{inputs.parameters.p}}}} {{{{inputs.parameters.r}}}}' > /tmp/seen"]}}
        """)
    n = by_display(wf)
    failed = n["gen(1:b)"]
    assert failed.phase == "Failed" and failed.output_parameter("p") == "p-b" and failed.outputs["result"] == "b"
    assert n["use"].output_parameter("seen") == '["p-a","p-c"] ["a","c"]'


def test_a_step_whose_when_is_false_is_skipped_before_its_arguments_are_resolved(tmp_path):
    # steps.go:458-492 (v4.1.2): "when" is judged first; a step that will not run is returned without
    # resolving its arguments, which here name the outputs of a step that was skipped too
    runner, wf = run(tmp_path, f"""
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {{name: t}}
        spec:
          entrypoint: main
          templates:
          - name: main
            steps:
            - - {{name: first, template: say, when: "1 == 2", arguments: {{parameters: [{{name: x, value: a}}]}}}}
            - - name: second
                template: say
                when: "1 == 2"
                arguments: {{parameters: [{{name: x, value: "{{{{steps.first.outputs.parameters.out}}}}"}}]}}
            - - {{name: third, template: say, arguments: {{parameters: [{{name: x, value: c}}]}}}}
          - name: say
            inputs: {{parameters: [{{name: x}}]}}
            outputs: {{parameters: [{{name: out, valueFrom: {{path: /tmp/out}}}}]}}
            {SH}, args: ["echo {{{{inputs.parameters.x}}}} > /tmp/out"]}}
        """)
    assert wf.phase == "Succeeded", wf.message
    phases = {n.display_name: n.phase for n in wf.nodes.values() if n.display_name in ("first", "second", "third")}
    assert phases == {"first": "Skipped", "second": "Skipped", "third": "Succeeded"}
