"""Test-only: lets Accelerate take its FSDP path on CPU processes (gloo), so that ft's real FSDP path runs
in tests on machines without GPUs. Never imported by ft: a test puts this folder on PYTHONPATH of the
processes it launches and sets FT_TEST_FSDP_ON_CPU=1; Python imports sitecustomize at start-up.

Accelerate turns ACCELERATE_USE_FSDP into DistributedType.FSDP only for GPU-like multi-process types
(MULTI_GPU, MULTI_XPU, ...); on CPU the processes stay MULTI_CPU and FSDP is silently ignored. The one
change: after AcceleratorState initialises, a MULTI_CPU state with an FSDP plugin becomes an FSDP state,
exactly as the MULTI_GPU branch does it (and, as it does, recorded in PartialState's shared state too, which
every later AcceleratorState() copies). Everything after that (fully_shard, sharded checkpoints, the
state-dict gathering on save, Trainer's FSDP branches) is the libraries' unchanged code, running over
gloo; PyTorch's FSDP2 supports CPU tensors.
"""

import os

if os.environ.get("FT_TEST_FSDP_ON_CPU") == "1":
    import accelerate.state as _state
    from accelerate.utils import DistributedType

    _original_init = _state.AcceleratorState.__init__

    def _init(self, *args, fsdp_plugin=None, **kwargs):
        _original_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            _state.PartialState._shared_state["distributed_type"] = self.distributed_type  # as the original does

    _state.AcceleratorState.__init__ = _init
