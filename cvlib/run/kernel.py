"""The kernel the stage notebooks run in: one per run, started once, its namespace reset before each notebook,
its numerical libraries' thread pools capped when it starts (`cvlib.threads`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat

from cvlib import i18n, io, threads


def kernel_manager_class(runtime_dir: str | Path | None = None) -> type:
    """The kernel manager for stage notebooks: over local IPC sockets where the system has them (POSIX), so
    code and client data do not travel over unencrypted TCP (and ipykernel does not warn that they do).

    With `runtime_dir` the kernel's sockets and connection file live there (one private folder per run), so
    concurrent runs never share or collide on them."""
    from jupyter_client.manager import AsyncKernelManager

    if os.name != "posix" and runtime_dir is None:
        return AsyncKernelManager
    where = str(runtime_dir) if runtime_dir is not None else None

    class PrivateKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            if os.name == "posix":
                kwargs.setdefault("transport", "ipc")
            if where is not None:
                kwargs.setdefault("connection_file", os.path.join(where, "kernel.json"))
                if os.name == "posix":
                    kwargs.setdefault("ip", os.path.join(where, "k"))  # socket files k-<port>
            super().__init__(**kwargs)

    return PrivateKernelManager


RESET_TAG = "cvlib-reset"
RESET_SOURCE = ("get_ipython().run_line_magic('reset', '-f')\n"
                "import gc as _gc, matplotlib.pyplot as _plt\n_plt.close('all')\n_gc.collect()\n_gc.freeze()\n"
                "del _gc, _plt\n"
                "from cvlib.threads import release_memory as _release\n_release()\ndel _release")


class StageKernel:
    """One kernel for every stage of a run. It starts once, so its start and the imports of pandas, scipy,
    scikit-learn and matplotlib are paid once (about 3 s a stage). Before each notebook its namespace is reset
    (`%reset -f`, figures closed, memory collected), so a notebook sees nothing an earlier one defined;
    the reset cell is removed from the executed notebook. What survives the reset (modules, the kernel's
    own objects) is then frozen out of the cycle collector (`gc.freeze`): every later collection, the two of
    each reset included, skips those 200,000 objects instead of walking them (0.13 s a collection). The kernel
    starts with the numerical libraries' thread counts capped (`cvlib.threads.thread_env`)."""

    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.km: Any = None

    def execute(self, nb_in: Path, out_nb: Path, parameters: dict, cwd: Path, tty: bool, language: str = "en") -> None:
        """Run one notebook with papermill into out_nb (written even when a cell fails), its narrative in the
        report language."""
        import papermill as pm

        nb = i18n.localise_notebook(nbformat.read(nb_in, as_version=4), nb_in.stem, language)
        nb.cells.insert(0, nbformat.v4.new_code_cell(RESET_SOURCE, metadata={"tags": [RESET_TAG]}))
        staged = self.runtime / f"in-{nb_in.name}"
        nbformat.write(nb, staged)
        if self.km is None:
            from jupyter_core.utils import run_sync

            self.km = kernel_manager_class(self.runtime)(kernel_name="python3")
            # started here in `cwd`, not by papermill's `cwd`, which changes this whole process's folder while a
            # notebook runs (two kernels run from two threads would leave it changed); no history file, as nbclient
            run_sync(self.km.start_kernel)(cwd=str(cwd), env={**os.environ, **threads.thread_env()},
                                           extra_arguments=["--HistoryManager.hist_file=:memory:"])
        try:
            pm.execute_notebook(str(staged), str(out_nb), parameters=parameters, kernel_name="python3",
                                progress_bar=progress_bar(nb_in.stem, tty), log_output=False,
                                request_save_on_cell_execute=False, km=self.km)
        finally:
            staged.unlink(missing_ok=True)

    def close(self) -> None:
        if self.km is not None and self.km.has_kernel:
            from jupyter_core.utils import run_sync

            try:
                run_sync(self.km.shutdown_kernel)(now=True)
            except Exception:  # a kernel that died with its stage: nothing left to stop
                pass


def progress_bar(name: str, tty: bool) -> dict | bool:
    """papermill's progress bar on a terminal: named after the stage and cleared when it ends, so the runner's
    lines and one bar at a time are all a terminal shows; none otherwise (a log file)."""
    return {"desc": name, "leave": False, "unit": "cell"} if tty else False


def execute_stage(kernel: StageKernel, nb_in: Path, out_nb: Path, parameters: dict, cwd: Path, tty: bool,
                  scrubber: Any, language: str = "en") -> None:
    """Run one stage notebook into the kernel's private folder, drop the reset cell, scrub its outputs, move it
    into place. The unscrubbed notebook never enters the run folder; the scrubbed one is written even when the
    stage failed (it shows the error)."""
    tmp_nb = kernel.runtime / out_nb.name
    error: Exception | None = None
    try:
        kernel.execute(nb_in, tmp_nb, parameters, cwd, tty, language)
    except Exception as exc:  # papermill's PapermillExecutionError, or a kernel that died
        error = exc
    if tmp_nb.exists():
        nb = nbformat.read(tmp_nb, as_version=4)
        nb.cells = [c for c in nb.cells if RESET_TAG not in c.get("metadata", {}).get("tags", [])]
        if scrubber.ids:
            scrubber.scrub_notebook(nb)
        io.write_text(nbformat.writes(nb), out_nb)
        tmp_nb.unlink(missing_ok=True)
    if error is not None:
        raise error
