import pytest

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


def test_missing_section_is_reported(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("other: {}\n")
    with pytest.raises(EammError, match="missing section 'sample_data'"):
        load_section(path, "sample_data", SampleDataParams)
