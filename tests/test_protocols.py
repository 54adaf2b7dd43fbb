"""Evaluation protocols as data (issue #14): `ours` is the old pinned protocol exactly, `eat`
is EAT's public MEAD protocol (dlib-68 points and crops, checked against dlib called directly on
fixture frames), bad names and empty splits stop with one line, and the report prints the
protocol it ran beside the published MEAD rows."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import yaml
from skimage.metrics import structural_similarity

from eamm.config import EvaluateParams, EvaluationProtocol, load_section
from eamm.errors import EammError
from eamm.metrics import FACE, MOUTH, lmd, ssim
from eamm.train.recipe import resolve_evaluate
from tests.conftest import ROOT, VENV_BIN

EAT_SPEAKERS = ["M003", "M030", "W009", "W015"]


def _params(**evaluate) -> EvaluateParams:
    params = load_section(ROOT / "params.yaml", "evaluate", EvaluateParams)
    return params.model_copy(update=evaluate)


def _write_params(tmp_path, recipe: str = "demo", **evaluate):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"].update(evaluate)
    params["recipe"] = recipe
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _lrw_frames(fixtures_dir, count: int = 8) -> np.ndarray:
    import cv2

    folder = fixtures_dir / "lrw_reference" / "ABOUT_00001" / "frames"
    return np.stack([cv2.imread(str(folder / f"{i}.png"))[..., ::-1] for i in range(count)])


def _dlib():
    return pytest.importorskip("dlib", reason="dlib not installed (pip install -e '.[bench]')")


# --- protocols as data -------------------------------------------------------------------------


def test_ours_is_the_old_pinned_protocol_and_the_default():
    params = _params()
    assert params.protocol == "ours"
    ours = params.resolved()
    assert ours == EvaluateParams().resolved() == EvaluationProtocol()
    assert (ours.max_clips, ours.max_frames, ours.source_frame) == (None, 100, "neutral")
    assert (ours.image_crop, ours.landmarker, ours.landmark_size) == ("aligned", "mediapipe", 256)
    assert (ours.ssim, ours.lmd_centred, ours.sync_crop) == ("gaussian", False, "aligned")
    assert (ours.vshift, ours.audio_offset, ours.mead_speakers) == (15, 0, None)
    assert not params.capped


def test_eat_is_eats_public_mead_protocol():
    eat = _params(protocol="eat").resolved()
    assert eat.mead_speakers == EAT_SPEAKERS
    assert eat.max_clips is None and eat.max_frames is None  # all test clips, whole clips
    assert (eat.image_crop, eat.landmarker, eat.lmd_centred) == ("dlib128", "dlib68", True)
    assert (eat.sync_crop, eat.vshift, eat.ssim) == ("pcavs224", 15, "uniform7")


def test_caps_cut_the_protocol_and_say_so():
    capped = _params(protocol="eat", max_clips=3, max_frames=12)
    assert (capped.resolved().max_clips, capped.resolved().max_frames) == (3, 12)
    assert capped.capped
    frames = _params(max_frames=500)  # ours takes 100 frames: a larger cap leaves it whole
    assert frames.resolved().max_frames == 100 and not frames.capped


def test_a_real_run_scores_every_test_clip_and_the_demo_a_seeded_20(tmp_path):
    """`ours` takes all test clips; the demo's recipe caps them (and the report says so), the
    reference recipe does not; the smaller of the recipe's and the section's caps wins."""
    real = resolve_evaluate(_write_params(tmp_path, recipe="eamm"))
    assert real.resolved().max_clips is None and not real.capped
    demo = resolve_evaluate(_write_params(tmp_path, recipe="demo"))
    assert demo.resolved().max_clips == 20 and demo.capped
    assert demo.resolved().max_frames == 100  # the protocol's own
    smaller = resolve_evaluate(_write_params(tmp_path, recipe="demo", max_clips=3))
    assert smaller.resolved().max_clips == 3
    eat = resolve_evaluate(_write_params(tmp_path, recipe="eamm", protocol="eat"))
    assert eat.resolved() == eat.protocols["eat"] and not eat.capped


def test_unknown_protocol_names_the_setting_and_the_known_names(tmp_path):
    path = _write_params(tmp_path, protocol="dreamtalk")
    with pytest.raises(EammError) as err:
        load_section(path, "evaluate", EvaluateParams)
    message = str(err.value)
    assert "evaluate.protocol" in message and "'dreamtalk'" in message
    assert "known: eat, ours" in message and "\n" not in message


def test_unknown_protocol_is_one_line_from_the_cli(tmp_path):
    path = _write_params(tmp_path, protocol="dreamtalk")
    result = subprocess.run(
        [str(VENV_BIN / "eamm"), "evaluate", "--params", str(path), "--out", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "evaluate.protocol" in lines[0] and "known: eat, ours" in lines[0]


def test_a_dlib128_crop_needs_the_dlib_landmarker(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"]["protocols"]["eat"]["landmarker"] = "mediapipe"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(EammError, match=r"evaluate\.protocols\.eat.*needs landmarker dlib68"):
        load_section(path, "evaluate", EvaluateParams)


# --- clip selection ----------------------------------------------------------------------------


def _fake_clips():
    from eamm.clips import Clip

    speakers = ["M003", "W009", "W011", "W015", "W020"]
    return [
        Clip(f"{s}/front/{e}/level_1/001", {}, 30, s, e, "mead")
        for s in speakers
        for e in ("angry", "neutral")
    ]


def test_select_clips_keeps_the_protocols_speakers(monkeypatch, tmp_path):
    import eamm.evaluate as evaluate

    monkeypatch.setattr(evaluate, "load_clips", lambda *a, **k: _fake_clips())
    eat = evaluate.select_clips(tmp_path / "manifest.parquet", _params(protocol="eat"))
    assert {c.speaker for c in eat} == {"M003", "W009", "W015"}
    assert len(eat) == 6  # all of them: no max_clips
    ours = evaluate.select_clips(tmp_path / "manifest.parquet", _params(max_clips=4))
    assert len(ours) == 4 and {c.speaker for c in ours} <= {"M003", "W009", "W011", "W015", "W020"}


def test_a_split_without_ok_clips_names_the_manifest(monkeypatch, tmp_path):
    import eamm.evaluate as evaluate

    manifest = tmp_path / "manifest.parquet"
    monkeypatch.setattr(evaluate, "load_clips", lambda *a, **k: [])
    with pytest.raises(EammError, match=r"manifest\.parquet: no ok clips in split 'test'"):
        evaluate.select_clips(manifest, _params())
    others = [c for c in _fake_clips() if c.speaker in ("W011", "W020")]
    monkeypatch.setattr(evaluate, "load_clips", lambda *a, **k: others)
    with pytest.raises(EammError, match=r"of speakers M003, M030, W009, W015") as err:
        evaluate.select_clips(manifest, _params(protocol="eat"))
    assert str(manifest) in str(err.value) and "\n" not in str(err.value)


# --- metric settings ---------------------------------------------------------------------------


def test_centred_lmd_is_blind_to_where_the_points_are():
    rng = np.random.default_rng(0)
    points = rng.uniform(20, 100, size=(4, 68, 2))
    moved = points + np.array([3.0, 4.0])
    assert lmd(moved, points, MOUTH) == pytest.approx(5.0)
    assert lmd(moved, points, MOUTH, centred=True) == pytest.approx(0.0, abs=1e-12)
    # a change of shape still counts: one mouth point 2 px off moves the centred distance
    bent = points.copy()
    bent[:, 50, 1] += 2.0
    assert lmd(bent, points, MOUTH, centred=True) > 0
    assert lmd(bent, points, FACE, centred=True) < lmd(bent, points, MOUTH, centred=True)


def test_uniform7_ssim_is_scikit_images_default():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 20, size=a.shape), 0, 255).astype(np.uint8)
    expected = np.mean(
        [
            structural_similarity(x, y, channel_axis=-1, data_range=255)
            for x, y in zip(a, b, strict=True)
        ]
    )
    assert ssim(a, b, window="uniform7") == pytest.approx(expected, abs=1e-12)
    assert ssim(a, b) != pytest.approx(expected, abs=1e-6)  # the Gaussian window differs


def test_delay_audio_shifts_by_whole_frames():
    from eamm.config import AUDIO_PER_FRAME
    from eamm.evaluate import delay_audio

    samples = np.arange(1, 5 * AUDIO_PER_FRAME + 1, dtype=np.float32)
    assert delay_audio(samples, 0) is samples
    later = delay_audio(samples, 2)
    assert len(later) == len(samples) and (later[: 2 * AUDIO_PER_FRAME] == 0).all()
    np.testing.assert_array_equal(later[2 * AUDIO_PER_FRAME :], samples[: 3 * AUDIO_PER_FRAME])
    earlier = delay_audio(samples, -1)
    np.testing.assert_array_equal(earlier[: 4 * AUDIO_PER_FRAME], samples[AUDIO_PER_FRAME:])


# --- dlib-68 and EAT's crops -------------------------------------------------------------------


def test_similarity_recovers_a_known_transform():
    """The crops' alignment (eamm.face.similarity, shared with preprocessing)."""
    from eamm.face.similarity import estimate_similarity

    rng = np.random.default_rng(2)
    src = rng.uniform(0, 200, size=(18, 2))
    angle, scale, shift = 0.3, 0.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = estimate_similarity(src, src @ rot.T + shift).matrix
    np.testing.assert_allclose(m, np.hstack([rot, shift[:, None]]), atol=1e-9)


def test_pcavs_crop_keeps_the_mouth_centre_at_its_place():
    from eamm.metrics.dlib68 import PCAVS_TARGETS, crop_template, pcavs_crops

    points = np.repeat(crop_template(256)[None], 3, axis=0) + np.array([10.0, 6.0])
    mouth = points[0, 60:68].mean(axis=0)
    frames = np.zeros((3, 256, 256, 3), np.uint8)
    x, y = np.round(mouth).astype(int)
    frames[:, y - 1 : y + 2, x - 1 : x + 2] = 255
    crops = pcavs_crops(frames, points)
    assert crops.shape == (3, 224, 224, 3)
    for crop in crops:
        ys, xs = np.nonzero(crop[..., 0] > 60)
        centre = np.array([xs.mean(), ys.mean()])
        np.testing.assert_allclose(centre, PCAVS_TARGETS[2] + (np.round(mouth) - mouth), atol=1.0)


@pytest.mark.fixtures
def test_dlib68_equals_dlib_called_directly_on_fixture_frames(fixtures_dir):
    dlib = _dlib()
    import cv2

    from eamm.metrics.dlib68 import Dlib68, predictor_path

    frames = _lrw_frames(fixtures_dir)
    ours = Dlib68()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(predictor_path()))
    for upsample in (0, 1):
        got = ours.clip(frames, upsample)
        assert got.shape == (len(frames), 68, 2) and got.dtype == np.float64
        for frame, points in zip(frames, got, strict=True):
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # as EAT's scripts convert
            rects = detector(gray, upsample)
            assert len(rects) >= 1
            shape = predictor(gray, rects[0])
            expected = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)])
            np.testing.assert_array_equal(points, expected)
    blank = ours.clip(np.zeros((2, 128, 128, 3), np.uint8))
    assert np.isnan(blank).all()  # no face: NaN rows


@pytest.mark.fixtures
def test_eat_scorer_crops_and_measures_a_fixture_clip(fixtures_dir):
    _dlib()
    import cv2

    from eamm.evaluate import ProtocolScorer
    from eamm.metrics.dlib68 import ALIGN_POINTS, crop_template

    # the real frames at the demo model's 64 pixels, and a copy shifted by 2 pixels
    frames = np.stack(
        [cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in _lrw_frames(fixtures_dir)]
    )
    shifted = np.roll(frames, 2, axis=2)
    scorer = ProtocolScorer(_params(protocol="eat").resolved(), sync_crops=True)
    try:
        truth, moved = scorer.views(frames), scorer.views(shifted)
    finally:
        scorer.close()
    assert truth.image.shape == (len(frames), 128, 128, 3) and truth.valid.all()
    assert truth.sync.shape == (len(frames), 224, 224, 3)
    assert np.isfinite(truth.landmarks).all()
    # the crop put the nose and eyes where the template has them
    offset = np.abs(truth.landmarks[:, ALIGN_POINTS] - crop_template()[ALIGN_POINTS]).mean()
    assert offset < 4.0
    same = scorer.score(truth, truth)
    assert same["psnr"] == pytest.approx(100.0) and same["ssim"] == pytest.approx(1.0)
    assert same["m_lmd"] == 0.0 and same["f_lmd"] == 0.0 and same["m_lmd_shape"] == 0.0
    # each frame is aligned on its own points: a 2-pixel shift is almost undone
    scores = scorer.score(moved, truth)
    assert 20 < scores["psnr"] < 100 and 0.5 < scores["ssim"] < 1
    assert 0 <= scores["m_lmd"] < 3 and 0 <= scores["f_lmd"] < 3


@pytest.mark.fixtures
def test_ours_scorer_is_the_old_measurement(fixtures_dir):
    import cv2

    from eamm.evaluate import ProtocolScorer
    from eamm.face.landmarks import FaceModels
    from eamm.metrics import clip_landmarks, psnr

    frames = np.stack(
        [cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in _lrw_frames(fixtures_dir)]
    )
    other = np.roll(frames, 2, axis=2)
    scorer = ProtocolScorer(_params().resolved())
    try:
        scores = scorer.score(scorer.views(other), scorer.views(frames))
    finally:
        scorer.close()
    face = FaceModels()
    try:
        big = [
            np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_CUBIC) for f in clip])
            for clip in (other, frames)
        ]
        pred, real = (clip_landmarks(clip, face) for clip in big)
    finally:
        face.close()
    assert scores["psnr"] == psnr(other, frames) and scores["ssim"] == ssim(other, frames)
    assert scores["m_lmd"] == lmd(pred, real, MOUTH) and scores["f_lmd"] == lmd(pred, real, FACE)
    # the mouth's shape whatever the protocol: a 2-pixel roll moves the points, not the shape
    assert scores["m_lmd_shape"] == lmd(pred, real, MOUTH, centred=True)
    assert scores["m_lmd_shape"] < scores["m_lmd"]


# --- the report --------------------------------------------------------------------------------


def _metrics() -> dict:
    row = {"psnr": 14.0, "ssim": 0.4, "m_lmd": 3.0, "f_lmd": 2.5, "cpbd": 0.2, "clips": 3}
    return {"mead": {"ground_truth": dict(row, psnr=None), "neutral": row}}


def test_published_rows_are_data_with_source_and_protocol():
    from eamm.report import DIRECTION, load_published

    published = load_published()
    assert published["rows"] and published["protocols"]
    for row in published["rows"]:
        assert row["method"] and row["source"] and isinstance(row["re_reported"], bool)
        assert row["protocol"] in published["protocols"]
        assert set(row["metrics"]) <= set(DIRECTION)
    methods = {(r["method"], r["protocol"]) for r in published["rows"]}
    assert {("EAMM", "dreamtalk"), ("EAT", "dreamtalk"), ("EAT", "eat")} <= methods


def test_report_prints_the_protocol_and_the_published_rows():
    from eamm.config import GenerateParams
    from eamm.report import markdown, run_protocol

    metrics = _metrics()
    capped = run_protocol(_params(protocol="eat", max_clips=3), GenerateParams())
    text = markdown(metrics, capped, {})
    assert "Protocol **`eat`**" in text and "Capped for a quick check" in text
    assert "| mead_speakers | M003, M030, W009, W015 |" in text
    assert "| image_crop | dlib128 |" in text and "| landmarker | dlib68 |" in text
    assert "### Published MEAD numbers" in text
    assert text.index("## MEAD") < text.index("### Published MEAD numbers")
    assert "DreamTalk (arXiv 2312.09767v3)" in text and "C-MET (CVPR 2026)" in text
    assert "re-reported by a later paper" in text
    assert "under protocol `eat` (3 clips), the protocol of: EAT (yuangan/evaluation_eat" in text
    assert "EAMM syncnet_conf: 1.41 (`dreamtalk`), 6.061 (`cmet`)" in text
    assert metrics == _metrics()  # measured values only: the report adds nothing to them

    ours = markdown(metrics, run_protocol(_params(), GenerateParams()), {})
    assert "Protocol **`ours`**" in ours and "Capped" not in ours
    assert "under protocol `ours`: no published row is" in ours


def test_a_metric_found_in_some_clips_only_says_over_how_many():
    """A mean over the clips where a face was found is labelled with their count (it read as
    a mean over the whole row's clips); a metric every clip has keeps the plain cell."""
    from eamm.config import GenerateParams
    from eamm.evaluate import METRICS, ClipScore, aggregate
    from eamm.report import markdown, run_protocol

    nan = float("nan")
    scores = [
        ClipScore(
            "mead",
            f"W009/{i}",
            "happy",
            "neutral",
            dict.fromkeys(METRICS) | {"psnr": 20.0 + i, "f_lmd": f_lmd},
        )
        for i, f_lmd in enumerate([2.0, nan, 4.0, nan])
    ]
    table = aggregate(scores)
    row = table["mead"]["neutral"]
    assert row["clips"] == 4 and row["f_lmd"] == 3.0 and row["f_lmd_clips"] == 2
    assert row["psnr"] == 21.5 and "psnr_clips" not in row
    text = markdown(table, run_protocol(_params(), GenerateParams()), {})
    assert "| neutral | 4 | 21.5 | 3 (2 of 4 clips) |" in text


def test_the_report_lists_the_generate_settings_the_evaluation_reads():
    """pose_smoothing, seed and crf are `eamm generate`'s alone (the evaluation drives with
    the clips' own pose rows, seeds with evaluate.seed, scores unencoded frames): the report
    listed them among the settings it ran with."""
    from eamm.config import GenerateParams
    from eamm.report import run_protocol

    listed = run_protocol(_params(), GenerateParams())["generate"]
    assert not {"pose_smoothing", "seed", "crf"} & set(listed)
    assert {"audio_weight", "audio_kp_smoothing", "emotion_smoothing", "relative"} <= set(listed)


# --- what a number is taken over (a hunt of the metrics against their references) -------------


def test_a_neutral_clip_takes_the_speakers_first_neutral_clip_as_source():
    """As docs/evaluation.md says: a neutral clip's source is the speaker's first neutral clip
    (it took its own first frame, which every variant then reproduces)."""
    from eamm.clips import Clip
    from eamm.evaluate import identity_source

    def clip(clip_id: str, emotion: str) -> Clip:
        return Clip(clip_id, {}, 10, "M003", emotion, "mead")

    pool = [clip("M003/angry/001", "angry"), clip("M003/neutral/001", "neutral")]
    pool.append(clip("M003/neutral/002", "neutral"))
    for scored in pool:
        assert identity_source(scored, pool, "neutral") is pool[1]
        assert identity_source(scored, pool, "own") is scored
    # stage 3's control: a neutral clip is its own (the first neutral clip is also the second's
    # emotion source, so the control equalled the scored number); another clip the first
    # neutral one; none without a neutral clip (the scored clips are other objects than the
    # pool's: compared by id)
    from eamm.evaluate import stage3_control

    copy = clip("M003/angry/001", "angry")
    assert [stage3_control(c, pool) for c in pool] == [pool[1], pool[1], pool[2]]
    assert stage3_control(copy, pool) is pool[1]
    assert stage3_control(copy, [clip("M003/angry/001", "angry")]) is None


def test_score_source_frame_false_leaves_the_identity_frame_out():
    """``static_source`` repeats a clip's own first frame where it is the identity image: that
    frame scored 100 dB and 0 px in every clip's mean. With ``score_source_frame: false`` PSNR,
    SSIM and LMD leave it out; true (both protocols, as EAT's scripts) keeps it."""
    from eamm.evaluate import ProtocolScorer, Views, without_frames
    from eamm.metrics import psnr

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    still = np.repeat(truth[:1], 4, axis=0)
    points = rng.uniform(0, 32, (4, 68, 2))
    moved = points + np.array([0.0, 3.0])
    moved[0] = points[0]
    views = [Views(f, np.ones(4, bool), p) for f, p in ((still, moved), (truth, points))]
    scorer = ProtocolScorer.__new__(ProtocolScorer)  # score() reads only the protocol
    scorer.protocol = EvaluationProtocol()
    kept = scorer.score(views[0], views[1])
    left_out = scorer.score(views[0], without_frames(views[1], [0]))
    assert kept["psnr"] == pytest.approx(psnr(still, truth))
    assert left_out["psnr"] == pytest.approx(psnr(still[1:], truth[1:]))
    assert kept["psnr"] > left_out["psnr"] + 15  # the 100 dB frame
    assert kept["m_lmd"] == pytest.approx(2.25) and left_out["m_lmd"] == pytest.approx(3.0)
    assert (
        _params().resolved().score_source_frame
        and _params(protocol="eat").resolved().score_source_frame
    )


def test_frames_where_preprocessing_found_no_face_are_not_scored():
    """``ours`` scored every frame: a real clip with 11 of 50 frames black (no face, NaN pose
    rows) had its still source's PSNR 27.5 -> 24.0 dB and its keypoint motion 1.10 -> 2.93
    px, the detector's keypoints on black frames counted as stage 1's targets."""
    import torch

    from eamm.clips import Clip
    from eamm.evaluate import ProtocolScorer, _Generated, _score, motion_error
    from eamm.judges.scoring import Judges
    from eamm.metrics import psnr

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    faces = np.array([False, True, True, False, False, True, True, True])
    video = np.clip(truth.astype(int) + rng.integers(-8, 9, truth.shape), 0, 255).astype(np.uint8)
    video[~faces] = 255 - truth[~faces]  # far off where the truth has no face
    clip = Clip("M1/front/happy/level_1/001", {}, 8, "M1", "happy", "mead")
    generated = _Generated(
        clip, truth[:1], truth, np.zeros((8, 28, 12)), {"static_source": video}, {}, {}, False,
        faces,
    )  # fmt: skip
    protocol = _params().resolved()
    scorer = ProtocolScorer(protocol)
    try:
        rows, _ = _score(generated, scorer, Judges(), None, protocol)
    finally:
        scorer.close()
    scored = next(r for r in rows if r.variant == "static_source").scores
    assert scored["psnr"] == pytest.approx(psnr(video[faces], truth[faces]))

    real = torch.from_numpy(rng.normal(0, 0.1, (8, 10, 2))).float()
    audio = real + 0.01
    noise = real.clone()
    noise[~torch.from_numpy(faces)] = 5.0  # the detector's keypoints on a black frame
    every = motion_error(audio, real)
    assert motion_error(audio, real, np.ones(8, bool)) == every
    none = motion_error(audio, real, np.zeros(8, bool))  # no frame with a face: no value
    assert np.isnan(none["neutral"]) and np.isnan(none["static_source"])
    masked = motion_error(audio, noise, faces)
    on_faces = motion_error(audio[faces], real[faces])  # measured from frame 1, the first face
    assert masked["neutral"] == pytest.approx(on_faces["neutral"], rel=1e-5)
    assert masked["static_source"] == pytest.approx(on_faces["static_source"], rel=1e-5)


def test_a_clip_without_a_face_has_no_syncnet_score():
    """Under ``eat``, a clip where dlib finds no face had black PC-AVS crops, which SyncNet
    scored as a clip (conf 0.18, the same for noise); now it has none, like its PSNR."""
    import torch

    from eamm.evaluate import judged_with
    from eamm.judges.scoring import Judges
    from eamm.metrics.dlib68 import pcavs_crops

    crops = pcavs_crops(np.zeros((6, 256, 256, 3), np.uint8), np.full((6, 68, 2), np.nan))
    assert crops.shape == (0, 224, 224, 3)
    judges = Judges(syncnet=torch.nn.Identity())
    frames = np.zeros((6, 64, 64, 3), np.uint8)
    scores = judged_with(judges, frames, crops, np.zeros((6, 28, 12)), np.zeros(3840), None)
    assert np.isnan(scores["syncnet_conf"]) and np.isnan(scores["syncnet_dist"])


def test_a_frame_cap_below_two_is_refused(tmp_path):
    """One frame is the source's own pixels: every variant scored 48-100 dB and the sync
    columns were empty, with exit 0."""
    for section in ({"max_frames": 1}, {"protocols": {"ours": {"max_frames": 1}}}):
        with pytest.raises(EammError, match="max_frames"):
            load_section(_write_params(tmp_path, **section), "evaluate", EvaluateParams)
