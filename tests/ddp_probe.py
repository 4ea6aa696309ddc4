"""Run a training script under `torchrun`, recording how many DDP wrappers are alive when the process group
is destroyed: `torchrun ... tests/ddp_probe.py SCRIPT ARGS...` writes `$DDP_PROBE_DIR/rank<R>.json`.

A wrapper alive at that moment makes its reducer the group's last owner, and the group is then destroyed
with the GIL held (a deadlock at exit; see `finish_training` in training/utils.py).
"""

import gc
import json
import os
import runpy
import sys
import weakref
from pathlib import Path

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

alive = weakref.WeakSet()
wrap = DistributedDataParallel.__init__
destroy = dist.destroy_process_group


def tracked_init(self, *args, **kwargs):
    wrap(self, *args, **kwargs)
    alive.add(self)


def probed_destroy(*args, **kwargs):
    gc.collect()  # only references still held count
    Path(os.environ["DDP_PROBE_DIR"], f"rank{os.environ['RANK']}.json").write_text(json.dumps(len(alive)))
    destroy(*args, **kwargs)


DistributedDataParallel.__init__ = tracked_init
dist.destroy_process_group = probed_destroy
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
