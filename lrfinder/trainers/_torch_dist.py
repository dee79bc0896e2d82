"""Every rank of a distributed range test learns at the same step that another failed.

A collective that one rank never reaches blocks the others until the process group's timeout
(30 minutes by default with NCCL). So the PyTorch trainer exchanges a small status vector, one
entry per rank, at each point of a step where one rank could stop while the others go on to a
collective: before each forward pass (DDP may broadcast buffers there), before the backward pass
(gradients are all-reduced there), and before the loss is averaged. A rank that fails or is
interrupted contributes its status at the next such point, or in :meth:`RankAgreement.report`
when it stops outside a step; every rank sees every status at the same point, and all stop there.

The statuses travel on the CPU through gloo (a group of their own when the default group uses
another backend), so that reading them never waits for an accelerator.
"""

from __future__ import annotations

from typing import Any

import torch

from lrfinder.errors import OtherRankFailed

__all__ = ["FAILED", "INTERRUPTED", "OK", "RankAgreement", "rank_mean"]

OK, FAILED, INTERRUPTED = 0, 1, 2


class RankAgreement:
    """The status exchange of one rank.

    Args:
        world_size: Number of ranks.
        rank: This rank.
    """

    def __init__(self, world_size: int, rank: int) -> None:
        self.world_size = world_size
        self.rank = rank
        self.reported = False
        self.interrupt_flag: Any = None  # a SigintFlag set by the engine, read at each exchange
        on_gloo = torch.distributed.get_backend() == "gloo"
        self._group = None if on_gloo else _gloo_group()
        self._device = torch.device("cpu")
        if not on_gloo and self._group is None and torch.cuda.is_available():
            self._device = torch.device("cuda", torch.cuda.current_device())

    def check(self, failure: BaseException | None = None) -> None:
        """Exchange statuses; raise when any rank (this one included) failed or was interrupted.

        Args:
            failure: What this rank raised since the last exchange, re-raised after it; None when
                it is fine (then a pending Ctrl-C, from the engine's flag, counts as interrupted).

        Raises:
            The ``failure`` itself; ``KeyboardInterrupt`` when this rank or another was
            interrupted; :class:`~lrfinder.errors.OtherRankFailed` when another rank failed.
        """
        status = OK
        if failure is not None:
            status = INTERRUPTED if isinstance(failure, KeyboardInterrupt) else FAILED
        elif self.interrupt_flag is not None and self.interrupt_flag.raised:
            status = INTERRUPTED
        statuses = self._exchange(status)
        if failure is not None:
            self.reported = True
            raise failure
        self._raise_for(statuses)

    def report(self, interrupted: bool) -> None:
        """Tell the other ranks that this one stopped outside a step (no exchange if told already)."""
        if self.reported or self.world_size < 2:
            return
        self.reported = True
        self._exchange(INTERRUPTED if interrupted else FAILED)

    def _exchange(self, status: int) -> list[int]:
        vector = torch.zeros(self.world_size, dtype=torch.int32)
        vector[self.rank] = status
        vector = vector.to(self._device)
        torch.distributed.all_reduce(vector, op=torch.distributed.ReduceOp.SUM, group=self._group)
        return [int(v) for v in vector.tolist()]

    def _raise_for(self, statuses: list[int]) -> None:
        failed = [r for r, s in enumerate(statuses) if s == FAILED]
        interrupted = [r for r, s in enumerate(statuses) if s == INTERRUPTED]
        if not failed and not interrupted:
            return
        self.reported = True
        if interrupted and statuses[self.rank] == INTERRUPTED:
            raise KeyboardInterrupt
        if failed:
            raise OtherRankFailed(
                f"lrfinder: rank {failed[0]} of {self.world_size} failed (its own error says why), so "
                f"rank {self.rank} stopped at the same step",
                rank=failed[0],
            )
        raise KeyboardInterrupt(f"rank {interrupted[0]} of {self.world_size} was interrupted")


def rank_mean(value: torch.Tensor, world_size: int) -> torch.Tensor:
    """The float32 mean of ``value`` over the ``world_size`` ranks of the default group (a SUM
    divided by the world size: gloo has no AVG); ``value`` itself is left unchanged."""
    total = value.detach().float().clone()
    torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return total / world_size


def _gloo_group() -> Any:
    """A gloo group over every rank, for the statuses (created by all ranks together)."""
    try:
        return torch.distributed.new_group(backend="gloo")
    except Exception:  # no gloo in this build: use the default group (one host sync per exchange)
        return None
