"""The benchmark's PyTorch variants, run in a process of their own.

PyTorch and TensorFlow in one process can crash it: PyTorch 2.14's default wheel makes
``torch.optim.SGD`` import triton, which ends TensorFlow's process with a segmentation fault.  So
the benchmark never imports torch: ``TorchWorker`` starts ``python -m rnn_lm_tools.torch_steps``,
which imports torch and not TensorFlow, builds a step there and runs it one call at a time on the
parent's request; the parent times each call around the pipe, so PyTorch's steps stay interleaved
with the others (the round trip, a few tens of microseconds, is counted in PyTorch's time).

The protocol, one JSON line each way: ``{"build": {"cell", "size" (the ModelSize's fields), "seed",
"adaptive"}}`` -> ``{"version": torch.__version__}`` or ``{"error": ...}``; ``{"step": true}`` ->
``{"loss": float}``.
"""

import dataclasses
import itertools
import json
import subprocess
import sys

from rnn_lm_tools.sizes import LEARNING_RATE, MAX_GRAD_NORM, ModelSize, random_batches


def make_torch_step(cell, size, batches, seed=0, adaptive=False):
    """The same step in PyTorch, as a callable returning the loss; needs ``import torch``.  ``adaptive``:
    with ``torch.nn.AdaptiveLogSoftmaxWithLoss`` (the cutoffs of ``size.cutoffs``, ``size.factor``)."""
    import torch

    torch.manual_seed(seed)
    H, V, L, B = size.hidden_size, size.vocab_size, size.num_layers, size.batch_size
    rnn_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "elman": torch.nn.RNN}[cell]
    embedding = torch.nn.Embedding(V, H)
    rnn = rnn_class(H, H, num_layers=L, batch_first=True)
    if adaptive:
        dense = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, cutoffs=list(size.cutoffs),
                                                       div_value=float(size.factor))
        loss_of = lambda outputs, targets: dense(outputs.reshape(-1, H), targets.reshape(-1)).loss
    else:
        dense = torch.nn.Linear(H, V)
        loss_of = lambda outputs, targets: torch.nn.functional.cross_entropy(
            dense(outputs).reshape(-1, V), targets.reshape(-1))
    params = [*embedding.parameters(), *rnn.parameters(), *dense.parameters()]
    optimizer = torch.optim.SGD(params, lr=LEARNING_RATE)
    data = itertools.cycle([(torch.from_numpy(x).long(), torch.from_numpy(y).long()) for x, y in batches])
    zeros = torch.zeros(L, B, H)
    state = (zeros, zeros.clone()) if cell == "lstm" else zeros

    def step():
        nonlocal state
        inputs, targets = next(data)
        optimizer.zero_grad(set_to_none=True)
        outputs, new_state = rnn(embedding(inputs), state)  # [B, T, H]
        loss = loss_of(outputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        # Detached: the next window's backward stops here (truncated BPTT).
        state = tuple(s.detach() for s in new_state) if cell == "lstm" else new_state.detach()
        return loss.item()

    return step


class TorchWorker:
    """One PyTorch train step in a child process: ``TorchWorker(cell, size, seed, adaptive)`` is
    a no-argument callable running one step and returning its loss.  ``version`` is PyTorch's; a
    child that cannot import torch or build the step raises ``TorchUnavailable``."""

    def __init__(self, cell, size, seed=0, adaptive=False):
        self._proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
        reply = self._ask({"build": {"cell": cell, "size": dataclasses.asdict(size), "seed": seed,
                                     "adaptive": adaptive}})
        if "error" in reply:
            self.close()
            raise TorchUnavailable(reply["error"])
        self.version = reply["version"]

    def _ask(self, request):
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise TorchUnavailable(f"the PyTorch process ended (exit status {self._proc.wait()})")
        return json.loads(line)

    def __call__(self):
        return self._ask({"step": True})["loss"]

    def close(self):
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait()


class TorchUnavailable(Exception):
    """PyTorch does not import, or its step cannot be built, in the child process."""


def serve(stdin=sys.stdin, stdout=sys.stdout):
    """The child's loop: build on the first request, then one step per request, until stdin ends."""
    step = None
    for line in stdin:
        request = json.loads(line)
        if "build" in request:
            b = request["build"]
            try:
                import torch
                size = ModelSize(**b["size"])
                step = make_torch_step(b["cell"], size, random_batches(size, seed=b["seed"]), b["seed"],
                                       b["adaptive"])
                reply = {"version": torch.__version__}
            except Exception as e:  # no PyTorch, or one that cannot run the step: the parent skips it
                reply = {"error": f"{type(e).__name__}: {e}"}
        else:
            reply = {"loss": step()}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve()
