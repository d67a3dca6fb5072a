"""``python -m bench``: run the benchmarks, write ``<output_dir>/<id>.json``, print one table.

    python -m bench --output_dir bench/results              # P1-P4 (make bench)
    python -m bench --quality --output_dir bench/results    # P5, P6, P8 (make bench-quality)
    python -m bench --only P1,P3                           # a subset
    python -m bench --smoke --output_dir /tmp/b            # one tiny step each (the smoke test)
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from pathlib import Path

from . import SPEED, QUALITY, BENCHES
from . import common as C


def parse(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="bench/results", help="Where <id>.json files go (default bench/results).")
    parser.add_argument("--quality", action="store_true", help="Run the quality benches P5, P6, P8 instead of P1-P4.")
    parser.add_argument("--only", default=None, help="Comma-separated ids to run, e.g. P1,P3 (overrides --quality).")
    parser.add_argument("--smoke", action="store_true",
                        help="One tiny step of each bench on a tiny model and synthetic data (for the tests).")
    parser.add_argument("--quick", action="store_true",
                        help="Fewer blocks / runs than the full settings (a reduced run; marked in the results).")
    parser.add_argument("--table", action="store_true",
                        help="Run nothing: print the table of the result files already in --output_dir.")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads. Default 1 for the speed benches P1-P4 (on a shared 2-core box two "
                             "intra-op threads stall on each other and on other processes: steps got several times "
                             "slower and far noisier), torch's default for P5-P6.")
    return parser.parse_args(argv)


def table(records: list[dict]) -> str:
    lines = ["| id | measure | value | target | pass/miss |", "|---|---|---|---|---|"]
    for r in records:
        verdict = {True: "pass", False: "MISS", None: "report"}[r.get("passed")]
        if r.get("error"):
            verdict = "ERROR"
        lines.append(f"| {r['id']} | {r['measure']} | {r['display']} | {r['target']} | {verdict} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse(argv)
    import torch

    if args.table:
        import json

        found = [Path(args.output_dir) / f"{i}.json" for i in BENCHES]
        print(table([json.loads(p.read_text()) for p in found if p.is_file()]))
        return 0
    C.quiet()
    if args.only:
        ids = [i.strip().upper() for i in args.only.split(",") if i.strip()]
        unknown = [i for i in ids if i not in BENCHES]
        if unknown:
            raise SystemExit(f"unknown bench id(s) {unknown}; known: {', '.join(BENCHES)}")
    else:
        ids = list(QUALITY if args.quality else SPEED)
    threads = args.threads or (None if all(i in QUALITY for i in ids) else 1)
    if threads:
        torch.set_num_threads(threads)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    ctx = C.BenchContext(output_dir=Path(args.output_dir), smoke=args.smoke, threads=torch.get_num_threads(),
                         command=command.strip(), quick=args.quick)
    C.log(C.machine_line())
    records, failed = [], False
    for bench_id in ids:
        start = time.perf_counter()
        C.log(f"== {bench_id}: {BENCHES[bench_id].MEASURE}")
        try:
            record = BENCHES[bench_id].run(ctx)
        except Exception as err:  # report the others, fail at the end
            traceback.print_exc()
            failed = True
            record = {"id": bench_id, "measure": BENCHES[bench_id].MEASURE, "display": f"error: {err}",
                      "target": BENCHES[bench_id].TARGET, "passed": None, "error": True}
        C.log(f"== {bench_id} done in {time.perf_counter() - start:.0f}s")
        records.append(record)
    C.log("")
    C.log(table(records))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
