"""The `cvlib` command: run, validate, example."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from cvlib.errors import CvlibError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cvlib", description="Customer value studies as parameterised notebooks.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a study's stage notebooks and render the reports")
    run.add_argument("params", help="the study's YAML file, e.g. params/cdnow.yaml")
    run.add_argument("--stages", nargs="+", metavar="STAGE",
                     help="run only these stages (cleaning rfm clv value drivers strategy); each input they "
                          "need comes from the newest earlier run of the study that has it")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter, e.g. --set cleaning.outliers.method=iqr (repeatable)")
    run.add_argument("--with-code", action="store_true", help="show the code cells in the HTML reports")
    run.add_argument("--reports-dir", help="where run folders go (default: reports/ beside notebooks/)")
    run.add_argument("--notebooks-dir", help="where the stage notebooks are (default: notebooks/)")

    val = sub.add_parser("validate", help="check parameters and input files without running")
    val.add_argument("params")
    val.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    ex = sub.add_parser("example", help="write an example data set and its params file")
    ex.add_argument("name", choices=["cdnow", "agency"], help="which example: the CDNOW purchases, or a synthetic "
                    "advertising agency's client book (billings, clients, survey)")
    ex.add_argument("--seed", type=int, default=7, help="agency: the generator's seed")
    ex.add_argument("dir", help="folder to write into")
    return p


def cmd_validate(params: str, overrides: list[str]) -> int:
    from cvlib import io, privacy
    from cvlib.cleaning import parse_amounts_explained, parse_dates
    from cvlib.errors import InputDataError
    from cvlib.params import load_study

    study = load_study(params, overrides)
    if study.privacy.pseudonymize_ids:
        privacy.load_key(study)  # refuses a pseudonymised study without a (long enough) key
    io.check_inputs(study)
    print(f"{params}: parameters valid (study {study.study!r}, client {study.client!r})")
    raw, bad = io.read_transactions(study, nrows=2000)
    scrub = (lambda t: t)
    if study.privacy.pseudonymize_ids:
        ids = set(raw["customer_id"].astype(str)) | (set(bad["customer_id"]) if "customer_id" in bad else set())
        scrub = privacy.Scrubber(ids, privacy.load_key(study)).scrub
    spec = study.inputs.transactions
    path = study.resolve(spec.path)
    dates, notes = parse_dates(raw["date"], spec.date_format)
    amounts, why = parse_amounts_explained(raw["amount"], spec.decimal, spec.thousands, spec.allow_exponent)
    n = len(raw)
    for label, ok, col in (("dates", dates.notna(), "date"), ("amounts", amounts.notna(), "amount")):
        if n and not ok.any():
            sample = raw.drop(columns=[io.ROW]).head(5).to_string(index=False)
            raise InputDataError(scrub(
                f"inputs.transactions: none of the first {n:,} {label} in {path} can be read (column "
                f"{getattr(spec.columns, col)!r}). First rows:\n{sample}\n"
                + ("Check date_format in the params file." if col == "date" else
                   "Check decimal, thousands and the amount column mapping in the params file.")))
    print(f"transactions: {path}: columns found; first {n:,} rows: "
          f"{int(dates.notna().sum()):,} dates and {int(amounts.notna().sum()):,} amounts readable")
    for note in notes:
        print(f"  {note}")
    unreadable = why[amounts.isna()]
    if len(unreadable):
        first = raw["amount"][amounts.isna()].iloc[0]
        print(scrub(f"  {len(unreadable):,} amount(s) cannot be read exactly and will be quarantined, e.g. "
                    f"{first!r}: {unreadable.iloc[0]}"))
    if len(bad):
        print(scrub(f"  {len(bad)} malformed line(s) in the sample, e.g. file row {bad['line'].iloc[0]}: "
                    f"{bad['text'].iloc[0]!r}"))
    for name in ("customers", "feedback"):
        t = io.read_attributes(study, name)
        if t is not None:
            print(f"{name}: {len(t):,} rows, {t['customer_id'].nunique():,} customers, columns {', '.join(t.columns)}")
    return 0


def cmd_example(name: str, dest: str, seed: int = 7) -> int:
    from cvlib.params import DATA_DIR

    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    if name == "agency":
        from cvlib.examples import write_agency

        for table, path in write_agency(out, seed).items():
            print(f"wrote {path}")
        print("Map them like params/agency_demo.yaml does (paths relative to your params file).")
        return 0
    shutil.copy2(DATA_DIR / "CDNOW_master.txt", out / "CDNOW_master.txt")
    shutil.copy2(DATA_DIR / "CDNOW_README.md", out / "README.md")
    print(f"wrote {out / 'CDNOW_master.txt'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from cvlib.runner import run_study

            run_study(args.params, args.stages, args.overrides, args.with_code, args.reports_dir, args.notebooks_dir)
            return 0
        if args.command == "validate":
            return cmd_validate(args.params, args.overrides)
        if args.command == "example":
            return cmd_example(args.name, args.dir, args.seed)
    except CvlibError as exc:
        print(f"cvlib: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cvlib: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
