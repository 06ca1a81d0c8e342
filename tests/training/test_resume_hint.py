"""The command `fantasyid train` prints after Ctrl-C resumes this very run (its run folder, every --set), and
`--resume latest` without a checkpoint is a one-line error instead of a silent fresh start."""

from __future__ import annotations

import shlex

from train_fixtures import tiny_dict

import fantasyid.training.loop as loop
from fantasyid.training.config import config_from_dict, dump_config


class _CtrlCAfterTheFirstStep(loop._Interrupt):
    """As if Ctrl-C came during step 1 (the real signal path is tested in test_train_loop.py)."""

    def __enter__(self):
        super().__enter__()
        self.requested = True
        return self


def _config_file(identity_data, tmp_path):
    """A config whose own output_dir is NOT the run's: the run gets --output-dir, as in the issue."""
    path = tmp_path / "tiny.yaml"
    data = tiny_dict(identity_data, tmp_path / "the-yaml-s-folder", train={"max_steps": 3},
                     checkpoint={"every": 0})  # fmt: skip
    path.write_text(dump_config(config_from_dict(data)))
    return path


def test_the_printed_command_resumes_this_run(identity_data, tmp_path, run_main, monkeypatch):
    config = _config_file(identity_data, tmp_path)
    run = tmp_path / "run folder"  # a space: the command must quote it
    argv = ["train", str(config), "--output-dir", str(run), "--set", "optim.lr=2e-3", "--set", "train.seed=5",
            "--resume", "auto"]  # fmt: skip
    with monkeypatch.context() as patch:
        patch.setattr(loop, "_Interrupt", _CtrlCAfterTheFirstStep)
        code, out, _ = run_main(argv)
    text = " ".join(out.split())
    assert code == 130 and "--resume auto: no checkpoint in" in text and "starting at step 0" in text
    line = next(line for line in out.splitlines() if line.startswith("resume with: "))
    command = shlex.split(line.removeprefix("resume with: "))
    assert command[:2] == ["fantasyid", "train"] and command[-2:] == ["--resume", "latest"]

    code, out, err = run_main(command[1:])  # followed as printed
    assert code == 0, err
    assert "finished at step 3 (from 1)" in " ".join(out.split())
    assert not (tmp_path / "the-yaml-s-folder").exists()


def test_resume_latest_without_a_checkpoint_is_an_error(identity_data, tmp_path, run_main, monkeypatch):
    import fantasyid.training.model as model

    def never(*args, **kwargs):
        raise AssertionError("the model was built before --resume was checked")

    monkeypatch.setattr(model, "build_components", never)
    config = _config_file(identity_data, tmp_path)
    code, _, err = run_main(["train", str(config), "--output-dir", str(tmp_path / "new"), "--resume", "latest"])
    assert code == 1 and "error: --resume latest: no checkpoint in" in err and "--resume auto" in err
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err  # error + hint
    assert not (tmp_path / "new").exists()
