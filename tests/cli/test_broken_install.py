"""A torch/torchvision pair that does not work together (the issue: pip fell back to a torchvision built for
another torch, and `fantasyid generate` printed ~300 lines ending in `torchvision::nms does not exist`) is one line
that says what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fantasyid.environment import installed_version, torch_pair_error, torchvision_release_for

ROOT = Path(__file__).resolve().parents[2]

# sitecustomize runs at interpreter start: from then on `import torchvision` fails as a mismatched build does
BROKEN_TORCHVISION = '''
import sys


class BrokenTorchvision:
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


sys.meta_path.insert(0, BrokenTorchvision())
'''


def test_generate_with_a_broken_torchvision_is_one_line_saying_what_to_install(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BROKEN_TORCHVISION)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)]), "COLUMNS": "200",
           "FANTASYID_HOME": str(tmp_path / "home")}  # fmt: skip
    env.pop("FANTASYID_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", "fantasyid", "generate", "--model", "tiny", "--ref",
                           str(ROOT / "examples" / "astronaut.jpg"), "--prompt", "a woman smiles", "--out",
                           str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr[-3000:]  # error + hint: no traceback
    assert lines[0].startswith("error: torch ") and "do not work together" in lines[0] and "torchvision::nms" in lines[0]
    assert lines[1] == "hint: install the pair CI tests, in the repository folder: pip install -c .ci/constraints.txt " \
                       "--force-reinstall torch torchvision"


def test_the_release_rule_holds_for_the_installed_pair_and_other_errors_pass_through():
    torch_version, vision_version = installed_version("torch"), installed_version("torchvision")
    assert vision_version.startswith(torchvision_release_for(torch_version) + ".")  # the pinned, working pair
    assert torchvision_release_for("2.5.1+cpu") == "0.20" and torchvision_release_for("1.13.1") is None
    assert torch_pair_error(ValueError("something else")) is None
    try:
        try:
            raise RuntimeError("operator torchvision::nms does not exist")
        except RuntimeError as inner:
            raise RuntimeError("Could not import module 'T5EncoderModel'") from inner
    except RuntimeError as outer:
        error = torch_pair_error(outer)
    assert error is not None and f"torch {torch_version} and torchvision {vision_version}" in error.message
