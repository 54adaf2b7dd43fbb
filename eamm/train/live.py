"""dvclive's training logs (``dvclive/metrics.json`` and ``plots/metrics/*.tsv``, what ``dvc
plots`` and ``dvc metrics`` read) without a DVC repository handle.

The stages save no DVC experiment and write no ``dvc.yaml`` of their own (``save_dvc_exp``
off, ``dvcyaml`` None), yet ``Live`` opened the repository anyway: about 34 file handles per
log (git pack indexes, DVC's state database) that ``end()`` never closed, 64 lost per stage in
one process (``eamm pipeline``; under ``ulimit -n 64`` a run hung in Prefect's crash handler
after its last step), DVC's site cache opened (a read-only ``/var/tmp`` stopped training with
"unable to open database file"), and, run in a git repository without DVC, ``dvc init`` there.
"""

from __future__ import annotations

from pathlib import Path

from dvclive import Live


class _RepoFreeLive(Live):
    def _init_dvc(self) -> None:  # dvclive's repository set-up, which only experiments need
        self._dvc_file = self._init_dvc_file()


def training_log(folder: Path, resume: bool = False) -> Live:
    """A dvclive ``Live`` writing to ``folder`` (continuing its step count where ``resume``)."""
    return _RepoFreeLive(str(folder), resume=resume, save_dvc_exp=False, dvcyaml=None)
