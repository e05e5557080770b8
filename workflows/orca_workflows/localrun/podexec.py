"""Container and script templates: one pod becomes one local process (see :mod:`.pods`).
Mixed into :class:`~.engine.WorkflowRun`."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .context import Ctx, NodeError, SlotToken
from .errors import LocalRunError, Unsupported
from .nodes import Node, fnv32
from .pods import Mount, PathMap, base_environment, run_process
from .spec import duration_seconds, param_string
from .templating import substitute, substitute_tree

STEP_EXCEEDED = "Pod was active on the node longer than the specified deadline"


# Kubernetes' default terminationMessagePath; the kubelet keeps at most 4096 bytes of it.
TERMINATION_LOG = "/dev/termination-log"
TERMINATION_LOG_MAX = 4096


def failed_pod_message(exit_code: int, termination_message: str) -> str:
    """A failed main container as operator.go inferFailedReason (v4.1.2 operator.go:1864-1868) words it:
    "main: <reason> (exit code N)", then ": <termination message>" when the container wrote one. The
    emissary writes none when the user's command itself exits non-zero (cmd/argoexec/main.go:28-37)."""
    msg = f"Error (exit code {exit_code})"
    if termination_message:
        msg = f"{msg}: {termination_message}"
    return f"main: {msg}"


# cmd/argoexec/commands/emissary.go: an argument longer than this (MaxEnvVarLen) is written to
# /tmp/argo_arg_<index>.txt and replaced by "@" and that path; the program must read it.
MAX_ARG_LEN = 131072


def _offload_large_args(argv: list[str], paths) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if len(arg) > MAX_ARG_LEN:
            container_path = f"/tmp/argo_arg_{i}.txt"
            local = Path(paths.to_local(container_path))
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(arg)
            out[i] = "@" + str(local)
    return out


class PodMixin:
    def _pod_name(self, node: Node, tmpl: dict) -> str:
        return f"{self.name}-{tmpl['name']}-{fnv32(node.name)}"

    def _pod_setup(self, node: Node, tmpl: dict, scope: dict) -> tuple[dict, PathMap, Path, dict]:
        """Substitute the pod's fields, pin and label it, and map its volumes to local folders."""
        pod_name = self._pod_name(node, tmpl)
        scope = {**scope, "pod.name": pod_name}
        where = f"{self.name}/{tmpl['name']}"
        selector = tmpl.get("nodeSelector") if tmpl.get("nodeSelector") is not None else self.spec.get("nodeSelector")
        selector = substitute_tree(selector or {}, scope, f"{where}.nodeSelector")
        labels = {**((self.spec.get("podMetadata") or {}).get("labels") or {}),
                  **((tmpl.get("metadata") or {}).get("labels") or {})}
        labels = {k: param_string(v, f"{where}.metadata.labels") for k, v in substitute_tree(labels, scope, f"{where}.metadata.labels").items()}
        pod_dir = self.log_dir / pod_name
        pod_dir.mkdir(parents=True, exist_ok=True)
        with self.runner.cond:
            node.pod_name = pod_name
            node.node_selector = selector
            node.host = selector.get("kubernetes.io/hostname")
            node.labels = labels
            node.logs = {"stdout": str(pod_dir / "stdout.log"), "stderr": str(pod_dir / "stderr.log")}
        body_key = "container" if "container" in tmpl else "script" if "script" in tmpl else "resource"
        body = substitute_tree(tmpl[body_key], scope, f"{where}.{body_key}")
        volumes = {v["name"]: v for v in (self.spec.get("volumes") or [])}
        volumes.update({v["name"]: v for v in (tmpl.get("volumes") or [])})
        mounts, config_maps = [], []
        for vm in body.get("volumeMounts") or []:
            if vm["name"] not in volumes:
                raise LocalRunError(f"{where}: volumeMount {vm['name']!r} names no volume")
            vol = substitute_tree(volumes[vm["name"]], scope, f"{where}.volumes.{vm['name']}")
            local = self._volume_local(vol, self._scratch(node), where)
            if "configMap" in vol:
                config_maps.append((vol["configMap"], local))
            if vm.get("subPath"):
                local = local / vm["subPath"]
            mounts.append(Mount(vm["mountPath"], local, bool(vm.get("readOnly"))))
        if body_key != "resource":   # the kubelet's file; only what the container writes there counts
            term = pod_dir / "termination-log"
            term.write_text("")
            mounts.append(Mount(TERMINATION_LOG, term))
        if not any(m.container_path.rstrip("/") == "/tmp" for m in mounts):
            (self._scratch(node) / "tmp").mkdir(parents=True, exist_ok=True)
            mounts.append(Mount("/tmp", self._scratch(node) / "tmp"))
        paths = PathMap(mounts)
        for cm, local in config_maps:
            self._write_config_map(cm, local, paths)
        with self.runner.cond:
            node.mounts = {m.container_path: str(m.local_path) for m in mounts}
        return body, paths, pod_dir, scope

    def _write_config_map(self, cm: dict, local: Path, paths: PathMap) -> None:
        """A mounted ConfigMap's keys as files; container paths inside them point to the local folders."""
        data = self.runner.store.get("ConfigMap", cm["name"]).get("data") or {}
        for item in cm.get("items") or [{"key": k, "path": k} for k in data]:
            value = self.runner.store.config_map_value(cm["name"], item["key"], bool(cm.get("optional")))
            (local / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (local / item["path"]).write_text(paths.to_local(value or ""))

    def _scratch(self, node: Node) -> Path:
        """The pod's own short-lived folders (emptyDir volumes, /tmp), deleted when it ends. They sit in a
        short path, as a container's /tmp does: Unix sockets made there (multiprocessing) need < 108 bytes."""
        return self.runner.scratch_root / f"{fnv32(node.name):08x}"

    def _drop_scratch(self, node: Node) -> None:
        shutil.rmtree(self._scratch(node), ignore_errors=True)

    def _volume_local(self, vol: dict, scratch: Path, where: str) -> Path:
        if "hostPath" in vol:
            hp = vol["hostPath"]
            local = self.runner.host_path(hp["path"], where)
            kind = hp.get("type", "")
            if kind == "Directory" and not local.is_dir():
                raise NodeError(f"hostPath {hp['path']} (type Directory) does not exist (local folder {local})")
            if kind in ("", "DirectoryOrCreate"):
                local.mkdir(parents=True, exist_ok=True)
            elif kind != "Directory":
                raise Unsupported(f"{where}.volumes.{vol['name']}.hostPath.type", kind)
            return local
        if "emptyDir" in vol:
            local = scratch / vol["name"]
            local.mkdir(parents=True, exist_ok=True)
            return local
        if "configMap" in vol:
            local = scratch / vol["name"]
            local.mkdir(parents=True, exist_ok=True)
            return local
        raise Unsupported(f"{where}.volumes.{vol['name']}", "only hostPath, emptyDir and configMap volumes run locally")

    def _run_pod(self, node: Node, tmpl: dict, scope: dict, ctx: Ctx, token: SlotToken) -> None:
        body, paths, pod_dir, scope = self._pod_setup(node, tmpl, scope)
        where = f"{self.name}/{tmpl['name']}"
        if body.get("terminationMessagePolicy", "File") != "File" or \
                body.get("terminationMessagePath", TERMINATION_LOG) != TERMINATION_LOG:
            # FallbackToLogsOnError would put the log's tail, argoexec's own lines included, in the message
            raise Unsupported(f"{where}.container.terminationMessagePolicy/Path",
                              "only the default /dev/termination-log with policy File")
        if not body.get("command"):
            raise Unsupported(f"{where}.container.command", "the image's entrypoint is unknown locally: give a command")
        argv = [paths.to_local(str(a)) for a in list(body["command"]) + list(body.get("args") or [])]
        argv = _offload_large_args(argv, paths)
        if "source" in body:
            src = pod_dir / "script-source"
            src.write_text(paths.to_local(body["source"]))
            argv = [paths.to_local(str(a)) for a in body["command"]] + [str(src)]
        env = base_environment(self.runner.pass_env)
        env["TMPDIR"] = paths.to_local("/tmp")
        for e in body.get("env") or []:
            if "value" in e:
                env[e["name"]] = paths.to_local(param_string(e["value"], f"{where}.env.{e['name']}"))
            elif "valueFrom" in e:
                field_path = e["valueFrom"]["fieldRef"]["fieldPath"]
                known = {"metadata.name": node.pod_name, "metadata.namespace": self.namespace,
                         "spec.nodeName": node.host or "localhost", "status.podIP": "127.0.0.1"}
                if field_path not in known:
                    raise Unsupported(f"{where}.env.{e['name']}.valueFrom.fieldRef.fieldPath", field_path)
                env[e["name"]] = known[field_path]
            else:
                env[e["name"]] = ""
        cwd = Path(paths.to_local(body["workingDir"])) if body.get("workingDir") else pod_dir
        cwd.mkdir(parents=True, exist_ok=True)
        deadline = (duration_seconds(substitute(str(tmpl["activeDeadlineSeconds"]), scope, where), f"{where}.activeDeadlineSeconds")
                    if tmpl.get("activeDeadlineSeconds") is not None else None)
        exec_left = None if ctx.execution_deadline is None else max(0.0, ctx.execution_deadline - time.time())
        if exec_left is not None and (deadline is None or exec_left < deadline):
            deadline = exec_left   # a retry under backoff.maxDuration: ARGO_DEADLINE
        if not token.take(ctx.cancel.is_set) or not self.slots.acquire(node.id, ctx.cancel.is_set):
            token.give_back()
            self.set_phase(node, "Failed", "Stopped before the pod started")
            return
        try:
            self.set_phase(node, "Running")
            (pod_dir / "command.json").write_text(json.dumps({"argv": argv, "cwd": str(cwd), "env": env}, indent=1))
            result = run_process(argv, env, cwd, Path(node.logs["stdout"]), Path(node.logs["stderr"]),
                                 deadline, ctx.cancel.is_set)
        finally:
            with self.runner.cond:
                node.finished_at = time.time()   # before the slot is free for the next pod
            self.slots.release(node.id)
            token.give_back()
        if result.reason == "start-error":   # the container cannot start: Argo fails the pod
            self.set_phase(node, "Failed", result.message)
            return
        outputs = {"exitCode": str(result.exit_code)}
        if result.reason == "deadline":
            node.outputs = outputs
            self.set_phase(node, "Failed", STEP_EXCEEDED)
            return
        if result.reason == "cancelled":
            node.outputs = outputs
            self.set_phase(node, "Failed", "Step exceeded its deadline" if self.deadline_hit
                           else "Stopped: the workflow was shut down")
            return
        # The wait container saves the result and output parameters whatever main's exit code
        # (postmain.go:42-48) and the controller puts them on the node (taskresult.go:128-132); only a
        # loop's aggregate leaves out a child that did not succeed (operator.go:3762).
        stdout = Path(node.logs["stdout"]).read_text(errors="replace")
        outputs["result"] = paths.to_container(stdout[:-1] if stdout.endswith("\n") else stdout)
        params, missing = self._output_parameters(tmpl, paths, scope, where)
        if params:
            outputs["parameters"] = params
        node.outputs = outputs
        if result.exit_code != 0:
            term = Path(paths.to_local(TERMINATION_LOG))
            text = term.read_bytes()[:TERMINATION_LOG_MAX].decode(errors="replace") if term.is_file() else ""
            self.set_phase(node, "Failed", failed_pod_message(result.exit_code, paths.to_container(text)))
        elif missing:
            self.set_phase(node, "Error", f"failed to read output parameter {missing[0]}: {missing[1]} does not exist")
        else:
            self.set_phase(node, "Succeeded")

    @staticmethod
    def _output_parameters(tmpl: dict, paths: PathMap, scope: dict, where: str) -> tuple[list[dict], tuple | None]:
        """Output parameters read from their files, up to the first missing one without a default
        (executor.go SaveParameters stops there); that one's (name, path)."""
        params = []
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            vf = p.get("valueFrom") or {}
            pwhere = f"{where}.outputs.parameters.{p['name']}"
            if "path" not in vf:
                raise Unsupported(f"{pwhere}.valueFrom", "pod outputs are read from valueFrom.path")
            local = Path(paths.to_local(substitute(vf["path"], scope, pwhere)))
            if local.is_file():
                text = local.read_text(errors="replace")
                value = paths.to_container(text[:-1] if text.endswith("\n") else text)
            elif "default" in vf:
                value = param_string(vf["default"], pwhere)
            else:
                return params, (p["name"], vf["path"])
            params.append({"name": p["name"], "value": value})
        return params, None

