"""Stop cleanly on SIGTERM / SIGINT: finish the current optimizer step, save a checkpoint, stop.

SLURM and Kubernetes send SIGTERM some time before SIGKILL; Ctrl-C sends SIGINT. The signal
handler only sets a flag; the callback turns it into Trainer's own save-and-stop controls at the
end of the step, so the checkpoint is the ordinary, resumable kind. A second signal aborts at once.
"""

import contextlib
import signal
import sys

from transformers import TrainerCallback

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class PreemptionCallback(TrainerCallback):
    def __init__(self):
        self.received: str | None = None  # the name of the first signal, once one arrived

    def on_step_end(self, args, state, control, **kwargs):
        if self.any_rank_received(args.device):
            control.should_save = True
            control.should_training_stop = True
        return control

    def any_rank_received(self, device) -> bool:
        """Ranks may get the signal a step apart: all stop at the same step, or the collectives hang."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return bool(self.received)
        flag = torch.tensor([1 if self.received else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received:
            print(f"ft: {name} again: aborting now, without saving", file=sys.stderr, flush=True)
            raise KeyboardInterrupt
        self.received = name
        print(
            f"ft: {name} received: finishing this step, saving a checkpoint, then stopping "
            f"(send it again to abort without saving)",
            file=sys.stderr,
            flush=True,
        )

    @contextlib.contextmanager
    def handling_signals(self):
        """Route SIGINT / SIGTERM to this callback inside the block (main thread only), then restore
        the previous handlers. A signal the process was started ignoring (nohup, a background job,
        some CI runners ignore SIGINT) stays ignored."""
        previous = {s: signal.getsignal(s) for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
        for s in previous:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
