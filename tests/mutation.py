"""Mutation testing: change the code on purpose and check that the tests notice.

    pip install mutmut==3.8.1                     # a developer tool, not a dependency
    python tests/mutation.py                      # every module below (tens of minutes on 2 cores)
    python tests/mutation.py kl report            # only these
    python tests/mutation.py kl --show            # and print each surviving mutant's diff

A test that passes whatever the code does teaches nothing, so each module where a silent
error would teach a learner something false is mutated by mutmut (one small change at a
time: an operator, a constant, a dropped argument), with only the tests that cover it.
A mutant the tests still pass "survives". The killed and surviving counts, and why each
survivor may stay, are in tests/README.md. It is too slow for CI on 2 cores, so it is not a
CI step: run it after changing one of these modules or its tests.

Each run works in a fresh temporary copy of the tracked files (mutmut writes a `mutants/`
folder beside the code), so the working tree is never touched.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

# name: (the module mutated, the tests that cover it)
TARGETS = {
    "kl": ("minirl/rl/kl.py", ["tests/test_rl_math.py"]),
    "rewards": ("minirl/rl/rewards.py", ["tests/test_rl_math.py"]),
    "advantages": ("minirl/rl/advantages.py", ["tests/test_rl_math.py"]),
    "losses": ("minirl/rl/losses.py", ["tests/test_rl_math.py", "tests/test_grpo_rloo.py"]),
    "functional": ("minirl/functional.py", ["tests/test_forward.py", "tests/test_forward_values.py",
                                            "tests/test_grad_fused.py"]),
    "report": ("minirl/examples/report.py", ["tests/test_report.py"]),
}


def run_target(name: str, mutmut: str, max_children: int, show: bool) -> dict:
    module, tests = TARGETS[name]
    with tempfile.TemporaryDirectory(prefix=f"minirl-mutation-{name}-") as tmp:
        work = pathlib.Path(tmp)
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        for rel in files.splitlines():
            if (ROOT / rel).is_file():
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, work / rel)
        (work / "setup.cfg").write_text("[mutmut]\nsource_paths=minirl\n"
                                        f"only_mutate={module}\n"
                                        "pytest_add_cli_args_test_selection=" + "\n    ".join(tests) + "\n"
                                        "pytest_add_cli_args=-p no:cacheprovider\n")
        subprocess.run([mutmut, "run", "--max-children", str(max_children)], cwd=work, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([mutmut, "export-cicd-stats"], cwd=work, check=True, stdout=subprocess.DEVNULL)
        stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
        survivors = subprocess.run([mutmut, "results"], cwd=work, capture_output=True, text=True).stdout.split()
        survivors = [s.rstrip(":") for s in survivors if "__mutmut_" in s]
        if show:
            for mutant in survivors:
                diff = subprocess.run([mutmut, "show", mutant], cwd=work, capture_output=True, text=True).stdout
                print(f"--- {mutant}\n" + "\n".join(line for line in diff.splitlines()
                                                     if line[:1] in "+-" and line[:3] not in ("---", "+++")))
    return {"module": module, "tests": tests, "killed": stats["killed"], "survived": stats["survived"],
            "timeout": stats["timeout"], "no_tests": stats["no_tests"], "total": stats["total"],
            "survivors": survivors}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"modules to mutate, of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--show", action="store_true", help="print the diff of every surviving mutant")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    parser.add_argument("--json", default=None, help="also write the counts here")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    mutmut = shutil.which("mutmut")
    if mutmut is None:
        print("error: mutmut is not installed; `pip install mutmut==3.8.1` (a developer tool, not a dependency).",
              file=sys.stderr)
        return 2
    results = {}
    for name in args.targets or TARGETS:
        r = results[name] = run_target(name, mutmut, args.max_children, args.show)
        caught = r["killed"] + r["timeout"]
        print(f"{r['module']:<28} {caught:>4} of {r['total']:>4} killed ({caught / max(r['total'], 1):.0%}), "
              f"{r['survived']} survived, {r['no_tests']} not covered   [{' '.join(r['tests'])}]", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
