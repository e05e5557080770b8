"""``orca-argo``: the Argo side of the pipeline.

  orca-argo render [--out DIR]     regenerate the chart's Argo YAML (DIR, default charts/orca-pipeline/files)
                                   and its values.yaml (next to DIR)
  orca-argo validate [FILE ...]    check Argo objects against Argo's CRD schemas made strict, their CEL
                                   rules and every template/task/parameter reference (default: the chart)
  orca-argo run-local TARGET ...   run rendered Argo YAML on this machine (see --help)
  orca-argo demo --out out/demo    simulate a small night and run it through subband-hours and subband-dispatch
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_FILES = REPO_ROOT / "charts" / "orca-pipeline" / "files"


def _key_values(pairs: list[str], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"orca-argo: {flag} {pair!r}: expected NAME=VALUE")
        k, v = pair.split("=", 1)
        out[k] = v
    return out


# --- render and validate (templates, chart) ------------------------------------------------------------
def add_render(sub) -> None:
    p = sub.add_parser("render", help="regenerate the chart's Argo YAML and values.yaml from the Hera templates")
    p.add_argument("--out", default=str(CHART_FILES), help=f"folder for the YAML files (default: {CHART_FILES})")


def cmd_render(args) -> int:
    from .render import render
    for path in render(Path(args.out)):
        print(path)
    return 0


def add_validate(sub) -> None:
    p = sub.add_parser("validate", help="validate Argo objects: strict CRD schema, CEL rules, references")
    p.add_argument("files", nargs="*", help="YAML files (several documents each); default: the chart's files")


def cmd_validate(args) -> int:
    from .validate import validate_paths
    problems = validate_paths([Path(f) for f in args.files] or sorted(CHART_FILES.glob("*.yaml")))
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


# --- run-local and demo (local runner) --------------------------------------------------------------------
def add_run_local(sub) -> None:
    p = sub.add_parser("run-local", help="run rendered Argo YAML on this machine",
                       description="Submit TARGET as `argo submit` would and run it here: every pod is a local "
                                   "process with the same command and arguments; hostPath volumes map to local "
                                   "folders. Anything the YAML uses that the runner does not implement stops the "
                                   "run with the field's name.")
    p.add_argument("target", help="a Workflow/CronWorkflow YAML file, workflowtemplate/NAME, cronworkflow/NAME, or NAME")
    p.add_argument("-t", "--templates", action="append", default=[],
                   help=f"YAML file or folder of WorkflowTemplates/ConfigMaps (default: {CHART_FILES})")
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("-f", "--parameter-file", help="YAML/JSON mapping of parameter names to values")
    p.add_argument("--volume-root", action="append", default=[], metavar="HOST_PATH=LOCAL_DIR",
                   help="local folder for a node path used by hostPath volumes, e.g. /fast=out/demo/fast")
    p.add_argument("--configmap", action="append", default=[], metavar="FILE",
                   help="ConfigMap YAML (semaphore limits, parameters from configMapKeyRef)")
    p.add_argument("--site-configmaps", action="store_true",
                   help="also load the ConfigMaps the chart builds (orca-site-config, orca-node-locks) from this "
                        "machine's site configuration (orca_steps.config.site(), i.e. ORCA_CONFIG)")
    p.add_argument("--semaphore", action="append", default=[], metavar="CONFIGMAP/KEY=N",
                   help="semaphore limit, overriding the ConfigMap")
    p.add_argument("--out", default="out/run-local", help="run record (run.json) and pod logs go here")
    p.add_argument("--namespace", default="default")
    p.add_argument("--progress", choices=["auto", "live", "plain", "off"], default="auto")


def cmd_run_local(args) -> int:
    from .localrun import LocalRunError, final_table, parse_volume_roots, run_local
    params = {}
    if args.parameter_file:
        params.update({k: str(v) for k, v in (yaml.safe_load(Path(args.parameter_file).read_text()) or {}).items()})
    params.update(_key_values(args.parameter, "-p"))
    limits = {k: int(v) for k, v in _key_values(args.semaphore, "--semaphore").items()}
    templates = (args.templates or [str(CHART_FILES)]) + args.configmap
    if args.site_configmaps:
        from orca_steps.config import site
        from .render import site_configmaps
        path = Path(args.out) / "site-configmaps.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(site_configmaps(site()), sort_keys=False))
        templates.append(str(path))
    try:
        runner, workflow = run_local(args.target, templates, args.out, params,
                                     parse_volume_roots(args.volume_root), limits, args.namespace, args.progress)
    except LocalRunError as exc:
        print(f"orca-argo run-local: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"orca-argo run-local: interrupted; pods stopped; record in {Path(args.out) / 'run.json'}", file=sys.stderr)
        return 130
    print(final_table(runner.record()))
    print(f"\nrun record: {runner.record_path}\npod logs:   {runner.log_dir}")
    return 0 if all(wf.phase == "Succeeded" for wf in runner.roots) else 1


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="simulate a small night and process it through subband-hours and subband-dispatch")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--progress", choices=["auto", "live", "plain", "off"], default="auto")


def cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(Path(args.out), progress=args.progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orca-argo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_render(sub)
    add_validate(sub)
    add_run_local(sub)
    add_demo(sub)
    commands = {"render": cmd_render, "validate": cmd_validate, "run-local": cmd_run_local, "demo": cmd_demo}
    args = parser.parse_args(argv)
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
