"""The evaluation judges, in one package: their networks (``emotion_classifier``,
``sync_expert``, with the reference SyncNet v2), how they score clips (``emotion``, ``sync``,
``scoring``), how they are trained and validated (``training``: used by ``eamm.train`` only,
inference never imports it) and their held-out figures (``plots``). EAMM names no judges;
``docs/evaluation.md`` says why each is built as it is.
"""

from eamm.judges.emotion_classifier import EmotionClassifier
from eamm.judges.sync_expert import SyncExpert, SyncNetV2

__all__ = ["EmotionClassifier", "SyncExpert", "SyncNetV2"]
