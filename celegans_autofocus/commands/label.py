# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""``celegans-autofocus label DATASET``: label every z image with its signed offset to focus."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

HELP = "label z-stacks by their best focus plane (or stack.yaml best_index) into DATASET/labels.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..core.dataset.labelling import AGREE_STEPS
    from ..core.focus import AUTO, MEASURES

    data = parser.add_argument_group("data")
    data.add_argument("dataset", type=Path, help="dataset root holding plates/<plate>/<stack>/z_<index>.png")
    how = parser.add_argument_group("labelling")
    how.add_argument("--measure", default=AUTO, choices=[AUTO, *sorted(MEASURES)],
                     help=f"{AUTO} (default): the best plane by the specimen's contrast mode (a peak of dark detail, a "
                          "phase object's contrast dip, or an emitter's contrast peak), flagged when the measures "
                          "disagree (benchmarks/labelling.md); or one focus measure whose maximum marks it "
                          "(vollath_f5: the paper's labels)")
    how.add_argument("--agree-steps", type=float, default=AGREE_STEPS,
                     help=f"{AUTO}: estimates this many steps apart or more disagree, and the stack is flagged "
                          "(default: %(default)g, the in-focus tolerance)")
    how.add_argument("--from-measure", action="store_true",
                     help="ignore best_index in stack.yaml and take the labeller's best plane (the paper's labels)")
    how.add_argument("--plots", type=Path, metavar="DIR",
                     help="write the focus curves of every flagged stack to DIR/<plate>__<stack>.png")
    how.add_argument("--force", action="store_true",
                     help="recompute stacks that are unchanged since the last labels.csv")
    how.add_argument("--workers", type=int, default=1, help="processes computing the measure (one stack each)")
    how.add_argument("--quiet", action="store_true", help="no progress bar and no per-file messages")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..core.dataset.errors import DatasetError
    from ..core.dataset.labelling import label_dataset

    if args.workers < 1:
        print(f"label: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if not args.agree_steps > 0:
        print(f"label: --agree-steps must be > 0, got {args.agree_steps}", file=sys.stderr)
        return 2
    bar = tqdm(unit="img", desc="label", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = label_dataset(args.dataset, args.measure, use_stack_best=not args.from_measure,
                               force=args.force, workers=args.workers, progress=progress,
                               agree_steps=args.agree_steps)
    except (DatasetError, ValueError) as exc:
        print(f"label: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    if not args.quiet:
        for msg in report.warnings:
            print(f"warning: {msg}", file=sys.stderr)
        for msg in report.skipped_files:
            print(f"skipped: {msg}", file=sys.stderr)
        for key, msg in sorted(report.failed.items()):
            print(f"failed: {msg} (kept its previous labels)", file=sys.stderr)
        for res in report.labelled:
            if res.ambiguous_reason:
                print(f"flagged: {res.stack.plate}/{res.stack.name}: best z {res.measured_best}: "
                      f"{res.ambiguous_reason}", file=sys.stderr)
    if args.plots:
        from ..plots import plot_focus_curves

        for res in report.labelled:
            if res.ambiguous_reason:
                scale = res.rows[0].measure.partition("@")[2]  # auto: the curves of the scale it read (NAME@SIGMA)
                shown = {name: c for name, c in res.curves.items() if name.partition("@")[2] == scale}
                plot_focus_curves(shown, res.measured_best, res.ambiguous_reason,
                                  args.plots / f"{res.stack.plate}__{res.stack.name}.png",
                                  title=f"{res.stack.plate}/{res.stack.name}", mode=res.mode)
    from_yaml = sum(r.best_from == "stack.yaml" for r in report.labelled)
    print(f"labels: {args.dataset / 'labels.csv'}  (measure {args.measure})")
    print(f"  stacks labelled     {len(report.labelled)}")
    print(f"    best from yaml    {from_yaml} (stack.yaml best_index; --from-measure ignores it)")
    print(f"    values reused     {len(report.cached)} (unchanged since labels.csv; --force recomputes)")
    print(f"  stacks failed       {len(report.failed)} ({report.kept_rows} previous rows kept)")
    print(f"  images in labels    {len(report.rows)} in {report.n_stacks} stacks")
    print(f"  skipped files       {len(report.skipped_files)}")
    print(f"  flagged stacks      {len(report.ambiguous_stacks)} (ambiguous=1 in labels.csv; check them"
          + (f", curves in {args.plots})" if args.plots else " with --plots DIR)"))
    modes = Counter(r.mode for r in report.labelled if r.mode)
    if modes:
        print("  contrast modes      " + ", ".join(f"{m} {n}" for m, n in sorted(modes.items())))
    return 1 if report.failed or report.skipped_files else 0
