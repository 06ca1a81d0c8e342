"""`fantasyid train` into an output_dir it cannot write: one line with a hint, before the model loads."""

from __future__ import annotations

import pytest
from train_fixtures import tiny_config

from fantasyid.training.config import dump_config


@pytest.mark.parametrize("flag", [[], ["--precompute-only"]])
def test_an_output_dir_that_cannot_be_written_is_one_line(identity_data, tmp_path, run_main, monkeypatch, flag):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # tests run as root: a path under a regular file is unwritable for anyone
    config = tiny_config(identity_data, blocker / "run", data={"windows": 1})
    path = tmp_path / "tiny.yaml"
    path.write_text(dump_config(config))
    monkeypatch.setattr("fantasyid.training.model.build_components",
                        lambda *a, **k: pytest.fail("the model loaded before the folder was checked"))
    code, _, stderr = run_main(["train", str(path), *flag])
    assert code == 1 and "Traceback" not in stderr, stderr
    assert f"'{blocker / 'run'}" in stderr and f"'{blocker}' is a file" in stderr and "hint:" in stderr
