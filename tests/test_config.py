import pytest
import yaml

from eamm.config import SampleDataParams, load_section
from eamm.errors import EammError
from tests.conftest import ROOT


def test_project_params_validate():
    params = load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)
    assert params.mead.fps == 30
    assert params.lrw.num_frames == 29


def test_bad_value_names_file_and_key(tmp_path):
    path = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text().replace("utterances: 1", "utterances: 0")
    path.write_text(text)
    message = r"params.yaml: bad value for sample_data\.mead\.utterances"
    with pytest.raises(EammError, match=message):
        load_section(path, "sample_data", SampleDataParams)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe\x00generate: {}", r"cannot read params \(not UTF-8 text\)"),
        (b"- generate\n- train_fomm\n", "params must be a mapping of sections, not a list"),
        (
            b"generate:\n  crf: [18\n",
            r"cannot read params \(while parsing a flow sequence: expected ',' or '\]', but got "
            r"'<stream end>' at line 3, column 1\)",
        ),
    ],
)
def test_unreadable_params_are_one_line_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(EammError, match=reason) as err:
        load_section(path, "generate", SampleDataParams)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_missing_section_is_reported(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("other: {}\n")
    with pytest.raises(EammError, match="missing section 'sample_data'"):
        load_section(path, "sample_data", SampleDataParams)


def _params_with(tmp_path, edit) -> str:
    import yaml

    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    ("stage", "edit", "key"),
    [
        ("train_fomm", lambda d: d["model"].update(profile="huge"), "model: "),
        (
            "train_a2fd",
            lambda d: d["model"]["profiles"]["tiny"].update(kp_detectr={}),
            "model.profiles.tiny.kp_detectr",
        ),
        (
            "train_emotion",
            lambda d: d["model"]["profiles"]["tiny"].pop("emotion"),
            "model.profiles.tiny.emotion",
        ),
        (
            "train_sync_expert",
            lambda d: d["judges"]["profiles"]["tiny"].pop("sync_expert"),
            "judges.profiles.tiny.sync_expert",
        ),
    ],
)
def test_model_and_judges_sections_are_typed(tmp_path, stage, edit, key):
    """A typo in the ``model`` or ``judges`` section stops the stage before anything is built,
    in one line naming the file and the key."""
    from eamm.train.recipe import resolve_stage

    path = _params_with(tmp_path, edit)
    with pytest.raises(EammError, match=key.replace(".", r"\.")) as err:
        resolve_stage(path, stage)
    assert str(err.value).startswith(path)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", -1e-3),
        ("lr", 0),
        ("betas", [0.5, 1.5]),
        ("gamma", 0),
        ("checkpoint_every", 0),
        ("log_every", 0),
        ("clip_len", 0),
    ],
)
def test_a_training_value_that_cannot_work_is_refused_before_the_run(tmp_path, field, value):
    """A negative learning rate failed inside the flow ("ValueError: Invalid learning rate",
    exit 1), ``checkpoint_every: 0`` with ZeroDivisionError after the first step."""
    from eamm.train.recipe import resolve_stage

    path = _params_with(tmp_path, lambda d: d["train_fomm"].update({field: value}))
    with pytest.raises(EammError, match=rf"bad value for train_fomm\.{field}"):
        resolve_stage(path, "train_fomm")


def test_a_key_given_twice_is_refused(tmp_path):
    """The last of two ``steps:`` won without a word."""
    path = tmp_path / "params.yaml"
    path.write_text("sample_data:\n  seed: 0\n  seed: 1\n")
    with pytest.raises(EammError, match=r"key 'seed' given twice at line 3"):
        load_section(path, "sample_data", SampleDataParams)


def test_an_audio_head_that_does_not_take_the_audio_networks_output_is_refused(tmp_path):
    """``audio_head.block_expansion: 4`` with ``audio.out_features`` 11: stage 1 started
    Prefect and failed with a bare RuntimeError on tensor sizes, naming no setting."""
    from eamm.train.recipe import resolve_stage

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["profiles"]["tiny"]["audio_head"]["block_expansion"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(EammError) as refused:
        resolve_stage(tmp_path / "params.yaml", "train_a2fd")
    assert str(refused.value) == (
        f"{tmp_path / 'params.yaml'}: bad value for model.profiles.tiny: audio.out_features (11) "
        "must equal audio_head.block_expansion + num_channels_a (7): the audio network's output "
        "is its head's input"
    )


def test_an_audio_head_width_that_is_not_a_whole_number_is_one_line(tmp_path):
    """``block_expansion: "8"`` escaped the validator as a TypeError traceback."""
    from eamm.train.recipe import resolve_stage

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["profiles"]["tiny"]["audio_head"]["block_expansion"] = "8"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(EammError) as refused:
        resolve_stage(tmp_path / "params.yaml", "train_a2fd")
    assert str(refused.value).endswith(
        "audio.out_features, audio_head.block_expansion and audio_head.num_channels_a must be "
        "whole numbers"
    )
