"""The `cvlib` command: run, validate, compare, package, example."""
from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

from cvlib import engines, i18n, io, paramdoc, portfolio_example, privacy, reading, scaffold
from cvlib.errors import CvlibError, InputDataError, ParamError
from cvlib.examples import write_agency
from cvlib.params import ATTRIBUTE_TABLES, DATA_DIR, load_study, short_repr
from cvlib.parsing import parse_amounts_explained, parse_dates
from cvlib.run import export, pages, portfolio, portfolio_pages, summary
from cvlib.run import history as runs
from cvlib.run.runner import run_study
from cvlib.stages import STAGES


def _add_init(sub: Any) -> None:
    ini = sub.add_parser("init", help="write a new client's params file from its data file (sniffed: format, "
                         "encoding, columns, window, currency); what only the client knows is left to fill")
    ini.add_argument("client", help="the client's name as the reports show it")
    ini.add_argument("data", help="the client's transactions file (CSV, TSV, Excel or Parquet)")
    ini.add_argument("--currency", help="the amounts' currency code, when the amounts carry no symbol")
    ini.add_argument("--study", help="the study's short name (default: from the client's name)")
    ini.add_argument("--params-dir", default="params", help="where to write <study>.yaml (default: params)")
    ini.add_argument("--force", action="store_true", help="overwrite an existing params file")


def _add_render(sub: Any) -> None:
    ren = sub.add_parser("render", help="render a complete run again for the client (client/ in the run folder: "
                                        "no consultant notes, diagnostics, run ids or parameters), running nothing")
    ren.add_argument("study", help="the study's name (its folder under reports/) or its params file")
    ren.add_argument("run", nargs="?", help="the run id (default: the latest complete run)")
    ren.add_argument("--client", action="store_true", required=True, help="the client's rendering")
    ren.add_argument("--reports-dir", default="reports", help="where the study's run folders are (default: reports)")


def _add_export(sub: Any) -> None:
    exp = sub.add_parser("export", help="a complete run's client rendering as PDF (headless Chromium) and as a "
                                        "slide deck (pptx), under <run>/export/")
    exp.add_argument("study", help="the study's name (its folder under reports/) or its params file")
    exp.add_argument("run", nargs="?", help="the run id (default: the latest complete run)")
    exp.add_argument("--pdf", action="store_true", help="each report and the summary page as PDF (A4)")
    exp.add_argument("--pptx", action="store_true", help="a deck of 10-15 slides (default: both when neither given)")
    exp.add_argument("--reports-dir", default="reports", help="where the study's run folders are (default: reports)")


def _add_portfolio(sub: Any) -> None:
    prt = sub.add_parser("portfolio", help="the standard metrics of many studies side by side, each placed against "
                                           "its peer group (HTML and xlsx)")
    prt.add_argument("studies", nargs="*", help="study names (default: every study under --reports-dir)")
    prt.add_argument("--group-by", default="industry", choices=["industry", "market_segment", "none"],
                     help="the peer groups (default: industry)")
    prt.add_argument("--language", default="en", choices=["en", "zh"], help="the page's language")
    prt.add_argument("--reports-dir", default="reports", help="where the study folders are (default: reports)")
    prt.add_argument("--out", help="the folder to write into (default: <reports-dir>/portfolio)")
    prt.add_argument("--rates", metavar="FILE", help="a currency rate table (YAML: base: EUR, rates: {USD: 0.92, ...}, "
                     "units of the base per unit) to compare money metrics across currencies; without it they are "
                     "ranked only among studies in the same currency")
    prt.add_argument("--benchmark-for", metavar="STUDY", help="instead, one client's page against its peer group, the "
                     "other clients named by keyed pseudonyms and cells with too few or a dominant peer hidden")
    prt.add_argument("--key-env", default="CVLIB_PSEUDONYM_KEY", help="the environment variable holding the "
                     "pseudonyms' key (default: CVLIB_PSEUDONYM_KEY)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cvlib", description="Customer value studies as parameterised notebooks.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a study's stage notebooks and render the reports")
    run.add_argument("params", help="the study's YAML file, e.g. params/cdnow.yaml, or a run's "
                                    "reports/<study>/<run>/params.yaml to rerun exactly that study")
    run.add_argument("--stages", nargs="+", metavar="STAGE",
                     help=f"rerun these stages ({' '.join(s.name for s in STAGES)}) even if nothing they depend "
                          "on changed; every other stage is reused when unchanged and run otherwise")
    run.add_argument("--force", action="store_true", help="rerun every stage (reuse nothing)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter, e.g. --set cleaning.outliers.method=iqr (repeatable)")
    run.add_argument("--with-code", action="store_true", help="show the code cells in the HTML reports")
    run.add_argument("--client", action="store_true", help="also render the run for the client (client/ in the run "
                     "folder: without the consultant's notes, diagnostics, run ids and the parameter dump)")
    run.add_argument("--reports-dir", help="where run folders go (default: reports/ beside notebooks/)")
    run.add_argument("--notebooks-dir", help="where the stage notebooks are (default: notebooks/)")

    _add_init(sub)
    val = sub.add_parser("validate", help="check parameters and input files without running")
    val.add_argument("params")
    val.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    cmp = sub.add_parser("compare", help="what changed between two runs of a study: parameters and headline figures")
    cmp.add_argument("study", help="the study's name (its folder under reports/) or its params file")
    cmp.add_argument("runs", nargs="*", metavar="RUN", help="two run ids, older first (default: the two newest "
                     "complete runs)")
    cmp.add_argument("--reports-dir", default="reports", help="where the study's run folders are (default: reports)")
    cmp.add_argument("--out", help="where to write the HTML (default: reports/<study>/compare-<A>-<B>.html)")

    pkg = sub.add_parser("package", help="one zip of a run's HTML reports, target lists and quarantine file, "
                                         "for the client")
    pkg.add_argument("study", help="the study's name (its folder under reports/) or its params file")
    pkg.add_argument("run", nargs="?", help="the run id (default: the latest complete run)")
    pkg.add_argument("--reports-dir", default="reports", help="where the study's run folders are (default: reports)")
    pkg.add_argument("--out", help="the zip to write (default: reports/<study>/<study>-<run>.zip)")

    _add_render(sub)
    _add_export(sub)
    _add_portfolio(sub)

    prm = sub.add_parser("params", help="the parameter reference (every key, its type, default and meaning)")
    prm.add_argument("--markdown", action="store_true", help="as Markdown (docs/parameters.md is this output)")

    ex = sub.add_parser("example", help="write an example data set and its params file")
    ex.add_argument("name", choices=["cdnow", "agency", "portfolio"], help="which example: the CDNOW purchases, a "
                    "synthetic advertising agency's client book (billings, clients, survey), or nine client books of "
                    "three industries, run and set side by side (cvlib portfolio)")
    ex.add_argument("--seed", type=int, default=7, help="agency: the generator's seed")
    ex.add_argument("dir", help="folder to write into")
    return p


def cmd_validate(params: str, overrides: list[str]) -> int:
    study = load_study(params, overrides)
    if study.privacy.pseudonymize_ids:
        privacy.load_key(study)  # refuses a pseudonymised study without a (long enough) key
    reading.check_inputs(study)
    print(f"{params}: parameters valid (study {study.study!r}, client {study.client!r})")
    raw, bad = reading.read_transactions(study, nrows=2000)
    scrub = str  # identity on text, replaced below for a pseudonymised study
    if study.privacy.pseudonymize_ids:
        ids = set(raw["customer_id"].astype(str)) | (set(bad["customer_id"]) if "customer_id" in bad else set())
        scrub = privacy.Scrubber(ids, privacy.load_key(study)).scrub
    spec = study.inputs.transactions
    path = engines.describe(study, spec)
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
                    f"{short_repr(first, 80)}: {str(unreadable.iloc[0])[:200]}"))
    if len(bad):
        print(scrub(f"  {len(bad)} malformed line(s) in the sample, e.g. file row {bad['line'].iloc[0]}: "
                    f"{short_repr(bad['text'].iloc[0], 120)}"))
    for name in ATTRIBUTE_TABLES:
        t = reading.read_attributes(study, name)
        if t is not None:
            print(f"{name}: {len(t):,} rows, {t['customer_id'].nunique():,} customers, columns {', '.join(t.columns)}")
    return 0


def run_scrubber(run_dir: Path):
    """The pseudonymising scrubber of a run's study (from its params.yaml; the ids in its input files when they are
    still there, else those in the parameters). A pseudonymised run whose scrubber cannot be built is refused."""

    try:
        study = load_study(run_dir / "params.yaml", check_files=False)
    except ParamError as exc:
        raise ParamError(f"{run_dir}: its params.yaml cannot be read ({exc}), so its ids cannot be pseudonymised; "
                         "nothing was written.") from None
    present = all(t.is_file and study.resolve(t.path or "").is_file() for t in study.input_tables().values())
    return privacy.scrubber_for(study, read_inputs=present)


def cmd_compare(study: str, run_ids: list[str], reports_dir: str, out: str | None) -> int:
    folder = runs.study_folder(study, Path(reports_dir))
    if len(run_ids) not in (0, 2):
        raise ParamError("cvlib compare: give two runs (RUN_A RUN_B) or none (the two newest complete runs).")
    a, b = (runs.find_run(folder, r) for r in run_ids) if run_ids else runs.two_newest(folder)
    scrub = run_scrubber(b).scrub
    with i18n.speaking(summary.run_language(b)):  # the page in the study's language (the figures' labels too)
        c = runs.compare(a, b)
        path = pages.write_compare(c, Path(out) if out else folder / f"compare-{a.name}-{b.name}.html", scrub)
    print(scrub(c.table()))
    print(f"\nwrote {path}")
    return 0


def cmd_render(study: str, run: str | None, reports_dir: str) -> int:
    """The client's rendering of a complete run (client/ in the run folder), nothing run again."""
    run_dir = runs.find_run(runs.study_folder(study, Path(reports_dir)), run)
    print(f"wrote {pages.write_client_rendering(run_dir)} (the client's rendering of run {run_dir.name})")
    return 0


def client_pages(study: str, run_dir: Path) -> Path:
    """The run's client rendering (made from the run if it is not there yet); refused while a page still holds
    the consultant's content."""
    client = run_dir / pages.CLIENT_FOLDER
    if not (client / "index.html").is_file():
        pages.write_client_rendering(run_dir)
    found = {p.name: hits for p in sorted(client.glob("*.html"))
             if (hits := pages.consultant_content(p.read_text(encoding="utf-8")))}
    if found:
        raise ParamError(f"{client} holds the consultant's content, so nothing was packaged: "
                         + "; ".join(f"{name}: {', '.join(h)}" for name, h in found.items())
                         + f". Write the client's rendering again: cvlib render {study} {run_dir.name} --client")
    return client


def cmd_package(study: str, run: str | None, reports_dir: str, out: str | None) -> int:
    """Pack a complete run's client rendering, refusing a page that still holds the consultant's content."""
    run_dir = runs.find_run(runs.study_folder(study, Path(reports_dir)), run)
    path = runs.package(run_dir, Path(out) if out else None, pages_dir=client_pages(study, run_dir))

    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    print(f"wrote {path}: {len(names)} files from run {run_dir.name}")
    for n in names:
        print(f"  {n}")
    return 0


def cmd_export(study: str, run: str | None, reports_dir: str, pdf: bool, pptx: bool) -> int:
    """The client rendering of a complete run as PDF and/or a slide deck (both when neither is asked for)."""
    run_dir = runs.find_run(runs.study_folder(study, Path(reports_dir)), run)
    if (runs.record(run_dir) or {}).get("status") != "complete":
        raise ParamError(f"{run_dir} is not a complete run: only complete runs are exported. Rerun the study.")
    both = not (pdf or pptx)
    for path in export.export(run_dir, client_pages(study, run_dir), pdf or both, pptx or both):
        print(f"wrote {path}")
    return 0


def cmd_portfolio(args: argparse.Namespace) -> int:
    """The portfolio page and workbook of the studies' latest complete runs, or one client's benchmark."""
    found = portfolio.collect(Path(args.reports_dir), args.studies or None)
    rates = portfolio.read_rates(Path(args.rates)) if args.rates else None
    p = portfolio.build(found, None if args.group_by == "none" else args.group_by, rates)
    out = Path(args.out) if args.out else Path(args.reports_dir) / "portfolio"
    if args.benchmark_for:
        key = portfolio.benchmark_key(args.key_env)
        written = portfolio_pages.write_benchmark(portfolio.benchmark(p, args.benchmark_for), key, out, args.language)
    else:
        written = portfolio_pages.write(p, out, args.language)
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_init(client: str, data: str, params_dir: str, currency: str | None, study: str | None, force: bool) -> int:
    """Write the new client's params file, then say what `validate` still needs."""
    out = scaffold.init(client, data, params_dir, currency, study, force, ask=sys.stdin.isatty())
    print(f"wrote {out}")
    try:
        load_study(out)
    except ParamError as exc:
        print(f"Before the study can run:\n{exc}\nFill these in {out}, then: cvlib validate {out}")
        return 0
    print(f"Check the lines marked CHECK in {out}, then: cvlib run {out}")
    return 0


def cmd_example(name: str, dest: str, seed: int = 7) -> int:
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    if name == "portfolio":
        return example_portfolio(out)
    if name == "agency":
        for table, path in write_agency(out, seed).items():
            print(f"wrote {path}")
        print("Map them like params/agency_demo.yaml does (paths relative to your params file).")
        return 0
    shutil.copy2(DATA_DIR / "CDNOW_master.txt", out / "CDNOW_master.txt")
    shutil.copy2(DATA_DIR / "CDNOW_README.md", out / "README.md")
    print(f"wrote {out / 'CDNOW_master.txt'}")
    return 0


def example_portfolio(out: Path) -> int:
    """Write the example portfolio's books, run every study (the declining client twice: a later export), then
    build the portfolio page (`cvlib.portfolio_example`)."""
    reports = out / "reports"
    for study, params in portfolio_example.write_portfolio(out).items():
        print(f"running {study}", flush=True)
        run_study(params, reports_dir=reports)
    print(f"running {portfolio_example.DECLINING} again on its next export", flush=True)
    run_study(portfolio_example.second_export(out), reports_dir=reports)
    return cmd_portfolio(_parser().parse_args(["portfolio", "--reports-dir", str(reports)]))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            run_study(args.params, args.stages, args.overrides, args.with_code, args.reports_dir, args.notebooks_dir,
                      force=args.force, client=args.client)
            return 0
        if args.command == "compare":
            return cmd_compare(args.study, args.runs, args.reports_dir, args.out)
        if args.command == "render":
            return cmd_render(args.study, args.run, args.reports_dir)
        if args.command == "export":
            return cmd_export(args.study, args.run, args.reports_dir, args.pdf, args.pptx)
        if args.command == "portfolio":
            return cmd_portfolio(args)
        if args.command == "package":
            return cmd_package(args.study, args.run, args.reports_dir, args.out)
        if args.command == "validate":
            return cmd_validate(args.params, args.overrides)
        if args.command == "init":
            return cmd_init(args.client, args.data, args.params_dir, args.currency, args.study, args.force)
        if args.command == "example":
            return cmd_example(args.name, args.dir, args.seed)
        if args.command == "params":
            sys.stdout.write(paramdoc.markdown() if args.markdown else paramdoc.text())
            return 0
    except CvlibError as exc:
        print(f"cvlib: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a full or read-only disk, a folder that cannot be made: said, never a traceback
        print(f"cvlib: error: {exc.strerror or exc} ({exc.filename or 'no file named'}). Free disk space or choose a "
              "writable folder (--reports-dir), then run again.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cvlib: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
