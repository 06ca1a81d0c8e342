"""Run by test_train_loop.py: train a config and SIGKILL this process right after optimizer step argv[2] (its log
line written, its checkpoint, if any, not): a kill -9 at a fixed step, not at a time."""

import os
import signal
import sys

from fantasyid.training.config import load_config
from fantasyid.training.loop import train

if __name__ == "__main__":
    config_path, kill_at = sys.argv[1], int(sys.argv[2])

    def on_step(step: int, loss: float) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train(load_config(config_path), on_step=on_step)
    sys.exit("the run ended without reaching the kill step")
