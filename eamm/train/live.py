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

import os
from pathlib import Path

from dvclive import Live, env
from dvclive.dvc import get_exp_name


class _RepoFreeLive(Live):
    def _init_dvc(self) -> None:
        """dvclive's set-up without the repository: ``dvc repro`` and ``dvc exp run`` known
        from the environment they set (``DVC_ROOT``, ``DVC_EXP_BASELINE_REV``,
        ``DVC_EXP_NAME``), as dvclive knows them."""
        if os.getenv(env.DVC_ROOT):
            self._inside_dvc_pipeline = True
            self._init_dvc_pipeline()
        self._exp_name = get_exp_name(self._exp_name, None, self._baseline_rev)
        self._dvc_file = self._init_dvc_file()

    def _init_studio(self) -> None:
        """Live updates to DVC Studio only inside ``dvc exp run`` (which names the experiment
        and its commit); elsewhere there is no commit to attach them to without the
        repository, and they went out unnamed."""
        if self._inside_dvc_exp:
            super()._init_studio()
        else:
            self._studio_events_to_skip |= {"start", "data", "done"}


def training_log(folder: Path, resume: bool = False) -> Live:
    """A dvclive ``Live`` writing to ``folder`` (continuing its step count where ``resume``)."""
    return _RepoFreeLive(str(folder), resume=resume, save_dvc_exp=False, dvcyaml=None)
