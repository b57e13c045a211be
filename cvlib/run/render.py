"""Rendering executed notebooks to self-contained HTML reports, in a background thread while the kernel runs
the next stage."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat

from cvlib import fonts
from cvlib.errors import StageError
from cvlib.run import pages

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

def render_html(ipynb: Path, title: str, with_code: bool = False) -> str:
    """An executed notebook as one self-contained HTML page (figures embedded)."""
    from nbconvert import HTMLExporter

    nb = nbformat.read(ipynb, as_version=4)
    exporter = HTMLExporter(template_name="cvlib", extra_template_basedirs=[str(TEMPLATES)])
    exporter.exclude_input = not with_code
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def render_stage(ipynb: Path, out: Path, title: str, with_code: bool, nav: dict | None) -> Path:
    """Render one stage report with the run's header and links (`pages.nav_spec`) and write it."""
    body = render_html(ipynb, title, with_code)
    return fonts.write_page(pages.stage_navigation(body, nav) if nav is not None else body, out)


class Renders:
    """Stage reports rendered one at a time in a background thread while the kernel runs the next stage (the
    kernel is another process, so the two overlap on two cores). `wait` returns when every report is written
    and raises on the first that failed."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="cvlib-render")
        self.pending: list[Future] = []

    def submit(self, ipynb: Path, out: Path, title: str, with_code: bool = False, nav: dict | None = None) -> None:
        self.pending.append(self.pool.submit(render_stage, ipynb, out, title, with_code, nav))

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        errors = [f.exception() for f in pending if f.exception() is not None]
        if errors:
            raise StageError(f"rendering a report failed: {type(errors[0]).__name__}: {errors[0]}")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
