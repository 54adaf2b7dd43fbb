"""The sample's facial expression per MEAD emotion: control-point moves, geometry only.

Each emotion moves the control points of ``eamm.sample.face.CONTROLS`` by (outwards, downwards)
in units of the eye distance, loosely after the FACS action units of its prototype (EMFACS):
happy 6+12, sad 1+4+15, angry 4+5+7+23, surprised 1+2+5+26, fear 1+2+4+5+20+26,
disgusted 9+10+15, contempt 14 on one side. The moves are exaggerated so that they stay
distinct on a 64x64 face crop. A level scales them (MEAD levels 1..3; neutral has level 1 only);
``opening`` adds to the speech's jaw opening and ``width`` sets the lip width between syllables.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Expression:
    moves: dict[str, tuple[float, float]] = field(default_factory=dict)
    opening: float = 0.0  # added jaw opening (0..1 of the widest vowel)
    width: float = 0.0  # lip width (-1 rounded .. +1 spread)

    def scaled(self, gain: float) -> Expression:
        return Expression(
            {k: (gain * o, gain * d) for k, (o, d) in self.moves.items()},
            gain * self.opening,
            gain * self.width,
        )


EXPRESSIONS: dict[str, Expression] = {
    "neutral": Expression(),
    "happy": Expression(
        {
            "corner": (0.17, -0.24),
            "cheek": (0.03, -0.14),
            "lower_lid": (0.0, -0.07),
            "upper_lip": (0.0, -0.03),
        },
        opening=0.15,
        width=0.6,
    ),
    "sad": Expression(
        {
            "brow_inner": (-0.06, -0.25),
            "brow_mid": (0.0, -0.04),
            "brow_outer": (0.0, 0.16),
            "upper_lid": (0.0, 0.07),
            "corner": (-0.04, 0.24),
            "lower_lip": (0.0, -0.08),
            "chin": (0.0, -0.06),
        },
        width=-0.2,
    ),
    "angry": Expression(
        {
            "brow_inner": (-0.12, 0.26),
            "brow_mid": (-0.05, 0.18),
            "brow_outer": (0.0, 0.02),
            "upper_lid": (0.0, -0.03),
            "lower_lid": (0.0, -0.05),
            "nose_wing": (0.05, -0.02),
            "corner": (-0.1, 0.05),
            "upper_lip": (0.0, 0.03),
            "lower_lip": (0.0, -0.06),
        },
        width=-0.6,
    ),
    "surprised": Expression(
        {
            "brow_inner": (0.0, -0.3),
            "brow_mid": (0.0, -0.34),
            "brow_outer": (0.0, -0.27),
            "upper_lid": (0.0, -0.09),
            "lower_lid": (0.0, 0.03),
        },
        opening=0.5,
        width=-0.7,
    ),
    "fear": Expression(
        {
            "brow_inner": (-0.08, -0.27),
            "brow_mid": (0.0, -0.13),
            "brow_outer": (0.0, 0.04),
            "upper_lid": (0.0, -0.09),
            "lower_lid": (0.0, -0.03),
            "corner": (0.18, 0.1),
        },
        opening=0.25,
        width=0.9,
    ),
    "disgusted": Expression(
        {
            "brow_inner": (-0.05, 0.18),
            "brow_mid": (0.0, 0.12),
            "upper_lid": (0.0, 0.05),
            "lower_lid": (0.0, -0.12),
            "cheek": (0.02, -0.16),
            "nose_wing": (0.05, -0.2),
            "upper_lip": (0.0, -0.3),
            "corner": (-0.04, 0.16),
            "lower_lip": (0.0, 0.08),
        },
        opening=0.25,
        width=0.1,
    ),
    "contempt": Expression(
        {
            "corner.r": (0.3, -0.42),
            "cheek.r": (0.05, -0.2),
            "lower_lid.r": (0.0, -0.12),
            "upper_lid.r": (0.0, 0.06),
            "brow_inner.r": (0.0, 0.1),
            "corner.l": (-0.08, 0.12),
            "brow_outer.l": (0.0, -0.2),
            "brow_mid.l": (0.0, -0.12),
        },
        width=-0.3,
    ),
}

LEVEL_GAIN = {1: 0.65, 2: 0.82, 3: 1.0}


def expression(emotion: str, level: int) -> Expression:
    """The expression of ``emotion`` at MEAD intensity ``level`` (1..3)."""
    if emotion not in EXPRESSIONS:
        raise ValueError(f"unknown emotion {emotion!r}; known: {sorted(EXPRESSIONS)}")
    if level not in LEVEL_GAIN:
        raise ValueError(f"level must be 1, 2 or 3, got {level}")
    return EXPRESSIONS[emotion].scaled(LEVEL_GAIN[level])
