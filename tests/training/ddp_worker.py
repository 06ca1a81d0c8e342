"""Run by test_distributed.py / test_zero2.py under torchrun or accelerate launch (or alone): train a config
(resuming from argv[3] when given), then save this process's parameters, its losses, its per-step gradient norms and,
under DeepSpeed, the DeepSpeed config accelerate used; under FSDP the parameters saved are this process's shards, and
``shards-rank{RANK}.json`` gives each parameter's (local, global) element counts."""

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from fantasyid.training import model as model_module
from fantasyid.training.config import load_config
from fantasyid.training.loop import train

if __name__ == "__main__":
    config_path, out = sys.argv[1], Path(sys.argv[2])
    resume = sys.argv[3] if len(sys.argv) > 3 else None
    captured = {}
    original = model_module.build_components

    def keep(*args, **kwargs):
        captured["components"] = original(*args, **kwargs)
        return captured["components"]

    model_module.build_components = keep
    result = train(load_config(config_path), resume=resume)
    rank = int(os.environ.get("RANK", "0"))  # the process group is gone after end_training()
    from torch.distributed.tensor import DTensor

    named = dict(captured["components"].module.named_parameters())
    params = {k: (v.to_local() if isinstance(v, DTensor) else v).detach().contiguous() for k, v in named.items()}
    out.mkdir(parents=True, exist_ok=True)
    shards = {k: [params[k].numel(), v.numel(), isinstance(v, DTensor)] for k, v in named.items()}
    (out / f"shards-rank{rank}.json").write_text(json.dumps(shards))
    save_file(params, str(out / f"params-rank{rank}.safetensors"))
    (out / f"losses-rank{rank}.txt").write_text("\n".join(str(x) for x in result.losses))
    (out / f"grad_norms-rank{rank}.txt").write_text("\n".join(str(x) for x in result.grad_norms))
    from accelerate.state import AcceleratorState

    kind = {"distributed_type": str(AcceleratorState._shared_state.get("distributed_type")),
            "num_processes": AcceleratorState._shared_state.get("num_processes")}
    (out / f"accelerate-rank{rank}.json").write_text(json.dumps(kind))
    plugins = AcceleratorState._shared_state.get("deepspeed_plugins")
    if plugins:
        plugin = next(iter(plugins.values())) if isinstance(plugins, dict) else plugins
        ds = plugin.deepspeed_config
        (out / f"deepspeed-rank{rank}.json").write_text(json.dumps(ds, default=str))
