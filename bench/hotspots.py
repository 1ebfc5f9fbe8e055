"""Each stage's hot spots at the papers' settings, and the stage windows before and after this
project's speed work, timed side by side.

For every window of :mod:`bench.stage_windows` (stages 1, 2, 3 and FOCAL) this

- times the window in the code of ``BASELINE_REVISION`` (the commit before the speed work,
  exported with ``git archive``) and in this checkout, in alternating subprocesses, and reports
  the medians and their ratio;
- lists the operators with the most self CPU time in this checkout's window (``torch.profiler``).

Without git or the baseline commit the before/after columns are left out. The changes measured
are listed in ``FIXES`` (they are described in ``bench/results.md``).

Run: python -m bench.hotspots [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from bench.common import Section, table
from bench.stage_windows import WINDOWS, profile_rows

REPOSITORY = Path(__file__).resolve().parents[1]
WINDOW_SCRIPT = Path(__file__).resolve().parent / "stage_windows.py"
BASELINE_REVISION = "a7a1507"
DESCRIPTIONS = {
    "stage1": "stage 1: 16 point_robot_sparse SAC agents stacked, 1 collection + 50 steps",
    "stage2": "stage 2: semi-circle VAE, T = 120, 64 trajectories, 2 steps",
    "stage3": "stage 3: offline SAC [128, 128], 16 x 256 of 80 tasks, 10 steps",
    "focal": "FOCAL: cheetah-vel settings with BRAC (c_iter 3), 2 updates",
}
FIXES = [
    "glibc allocator keeps freed blocks (`utils.seeding.keep_freed_memory`, called by every "
    "script unless `--reuse-freed-memory false`): activations were served by fresh kernel pages "
    "every step (page faults, zeroing); largest effect on stage 2, whose all-pairs tensors are "
    "119 MB each; the process keeps its peak memory",
    "ensemble output layers with one output (every critic, V) compute a dot product per row on "
    "CPU instead of a batched matrix-vector product (`models/ensemble.py`), which MKL runs "
    "several times slower for stacks of 2 or more members",
    "the policy's mean and log-std heads are one layer; log pi reuses the drawn noise",
    "metrics stay on the device as tensors and leave it in one copy per logged iteration "
    "(`algorithms.common.mean_metrics`) instead of one `.item()` per metric per update; "
    "Polyak averaging is one multi-tensor `lerp_`",
    "the policy step back-propagates into the policy's parameters only (`backward(inputs=...)`)",
    "replay batches are gathered with one `index_select` per field on the flattened storage "
    "instead of indexing with two index tensors (`utils/replay.py`), about 3x faster",
    "stacked networks apply their ReLUs in place, and each layer returns its fresh output rather "
    "than a reshaped view of it (an in-place ReLU on a view would pay autograd's bookkeeping for "
    "views; `models/ensemble.py`): one pass over each hidden activation fewer. Measured alone "
    "against the commit before it: stage-1 window 1.01-1.10x, stage-3 window 1.08-1.11x, FOCAL "
    "unchanged (its large networks are not stacked)",
]


def window_run(root: Path, window: str, quick: bool, repeats: int, profile: int = 0):
    """Run the window script against the checkout ``root``; returns its JSON output."""
    command = [sys.executable, str(WINDOW_SCRIPT), "--root", str(root), "--window", window,
               "--repeats", str(repeats)]
    if quick:
        command.append("--quick")
    if profile:
        command += ["--profile", str(profile)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"window {window} in {root} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)


def export_baseline(directory: Path) -> Path | None:
    """The baseline revision's files under ``directory``, or None without git or the commit."""
    archive = directory / "baseline.tar"
    try:
        with archive.open("wb") as stream:
            subprocess.run(["git", "-C", str(REPOSITORY), "archive", BASELINE_REVISION],
                           stdout=stream, stderr=subprocess.DEVNULL, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    target = directory / "baseline"
    with tarfile.open(archive) as bundle:
        bundle.extractall(target, filter="data")
    return target


def run(quick: bool, rounds: int = 3, repeats: int = 2) -> Section:
    """Before/after medians per window (skipped when quick) and each window's top operators."""
    rows, profiles = [], []
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as directory:
        baseline = None if quick else export_baseline(Path(directory))
        for window in WINDOWS:
            if baseline is not None:
                medians: dict[str, list[float]] = {"before": [], "after": []}
                for _ in range(rounds):
                    for label, root in (("before", baseline), ("after", REPOSITORY)):
                        medians[label].append(window_run(root, window, quick,
                                                         repeats)["median"])
                before, after = (statistics.median(medians[label])
                                 for label in ("before", "after"))
                rows.append([DESCRIPTIONS[window], f"{before:.3f}", f"{after:.3f}",
                             f"{before / after:.2f}x"])
            top = (profile_rows(window, quick, 3) if quick  # in this process: faster
                   else window_run(REPOSITORY, window, quick, 1, profile=5))
            profiles.append(f"- {DESCRIPTIONS[window]}: " + "; ".join(
                f"`{row['operator']}` {row['shapes']} {row['share']:.0%}" for row in top))
    lines = ["`python -m bench.hotspots`: each stage's inner loop for a short window at the "
             "papers' settings (`bench/stage_windows.py`), one PyTorch thread.", ""]
    if rows:
        lines += [f"Before (commit {BASELINE_REVISION}, before the speed work) and after (this "
                  f"checkout), wall seconds per window, median of {rounds} alternating "
                  "subprocess rounds:", "",
                  *table(["window", "before s", "after s", "speed-up"], rows), "",
                  "Changes between the two:", "", *[f"- {fix}" for fix in FIXES], ""]
    else:
        lines += ["(Before/after timing skipped: quick run, or no git history with commit "
                  f"{BASELINE_REVISION}.)", ""]
    lines += ["Largest operators by self CPU time now (`torch.profiler`, share of the window):",
              "", *profiles]
    headlines = {f"{window} window before/after": row[3]
                 for window, row in zip(WINDOWS, rows, strict=False)}
    return Section("Hot spots: stage windows before and after", lines, headlines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="profiles only, tiny windows")
    arguments = parser.parse_args()
    print(run(arguments.quick, arguments.rounds).markdown())


if __name__ == "__main__":
    main()
