"""Data-parallel SVI on ``torch.distributed`` (launched by ``torchrun``).

What a rank does (``SVIConfig(distributed=True)``, or ``--option distributed=true`` on the
command line under ``torchrun --nproc-per-node N -m ppl_gen fit ...``):

* joins the process group ``torchrun`` describes in its environment (gloo on CPU, NCCL on
  CUDA, each rank on ``cuda:LOCAL_RANK``), with a collective timeout, so a rank that dies
  makes the others fail with a message instead of waiting for ever (``torchrun`` itself
  stops the survivors when one worker exits non-zero);
* creates every parameter with one loss evaluation (autoguides and ``pyro.param`` create
  theirs lazily: Pyro's ``svi_horovod.py`` runs the guide once for the same reason) and
  takes rank 0's values (a broadcast), so every rank starts from the same point even when
  the networks were initialised from different random states;
* reads its own shard of each global minibatch: every epoch is one permutation of the
  data drawn from ``seed + epoch`` (``DistributedSampler``'s rule), the global batch of a
  step is the next ``batch_size`` indices of it and rank ``r`` takes every
  ``world_size``-th of them from the ``r``-th. The indices are passed to the model's
  ``pyro.plate("data", N, subsample_size=...)`` by a handler (:class:`Shard`), so the
  plate's scale is N / local batch with N the global data size — automatic subsampling
  would give every rank the same indices (Pyro's note in ``svi_horovod.py``);
* after the backward pass, sums the gradients and the loss over ranks in one flat
  ``all_reduce`` and divides by the number of ranks: the mean of the ranks' unbiased
  minibatch estimates, i.e. the gradient of the global batch's ELBO estimate. This is
  what ``DistributedDataParallel``'s bucketed hooks and Horovod's ``DistributedOptimizer``
  compute; it is done after the step's backward rather than through a DDP-wrapped module
  because the SVI step's parameters are gathered from the trace (lazy parameters,
  autoguides, plain ``pyro.param``), which DDP cannot see at wrap time (Lightning#14534);
* draws its own random numbers: before each step torch is seeded from ``(seed, rank,
  step)``, so the local latents' noise differs between ranks, and a resumed run repeats
  an uninterrupted one on every rank, not only on the rank whose generator the
  checkpoint holds.

Only rank 0 writes checkpoints, progress bars and run folders (:func:`is_writer`).
"""

from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

__all__ = ["Group", "join", "is_writer", "rank_and_world", "launched_rank",
           "launched_world_size", "Shard", "ShardSchedule",
           "reduce_gradients", "broadcast_parameters", "DistributedError", "ChainShard",
           "chain_shard", "chain_blocks", "run_chains"]


class DistributedError(RuntimeError):
    """A distributed fit cannot start or cannot go on (a missing launcher, a dead rank)."""


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: the process group's, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_writer() -> bool:
    """Whether this process writes files (rank 0, or no process group at all)."""
    return rank_and_world()[0] == 0


def launched_rank() -> int:
    """The rank ``torchrun`` put in the environment (0 when not launched by it): what the
    command line reads before the process group exists."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def launched_world_size() -> int:
    """The world size ``torchrun`` put in the environment (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@dataclass
class Group:
    """This rank's place in the process group."""

    rank: int
    world_size: int
    backend: str
    device: torch.device


def local_device(device: torch.device) -> torch.device:
    """A rank's device: ``cuda:LOCAL_RANK`` when the fit asked for CUDA without an index."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def join(device: torch.device, timeout_seconds: float) -> Group:
    """Join (or reuse) the default process group for a fit on ``device``."""
    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedError("distributed=True needs torch.distributed, which this torch "
                               "build lacks; install a torch build with it, or drop "
                               "distributed=True")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size(), dist.get_backend(), device)
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if k not in os.environ]
    if missing:
        raise DistributedError(
            "distributed=True but this process was not started by a launcher (no "
            f"{', '.join(missing)} in the environment): run it with torchrun, e.g. "
            "'torchrun --standalone --nproc-per-node 2 -m ppl_gen fit MODEL --engine svi "
            "--option distributed=true ...', or call torch.distributed.init_process_group "
            "yourself before fit")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds))
    # A rank that exits with the group alive can abort in gloo's thread teardown
    # ("terminate called without an active exception": 1 of 3 two-process CLI runs);
    # torch asks for destroy_process_group before exit. At exit, not after the fit: a
    # second init_process_group in the same torchrun process fails to connect.
    atexit.register(_end_group)
    return Group(dist.get_rank(), dist.get_world_size(), backend, device)


def _end_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass
class ShardSchedule:
    """Which rows of the data each rank reads at each step (see the module docstring)."""

    num_data: int
    global_batch: int
    rank: int
    world_size: int
    seed: int
    device: torch.device
    _epoch: int = -1
    _permutation: torch.Tensor | None = field(default=None, repr=False)

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.num_data // self.global_batch

    def global_indices(self, step: int) -> torch.Tensor:
        """The global minibatch of ``step`` (0-based), the same on every rank."""
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._permutation = torch.randperm(self.num_data, generator=generator)
            self._epoch = epoch
        assert self._permutation is not None
        start = within * self.global_batch
        return self._permutation[start:start + self.global_batch]

    def indices(self, step: int) -> torch.Tensor:
        """This rank's rows of step ``step``'s global minibatch."""
        return self.global_indices(step)[self.rank::self.world_size].to(self.device)


class Shard(Messenger):
    """Gives the model's and the guide's ``pyro.plate(name, N, subsample_size=...)`` the
    indices ``indices`` instead of a random subsample."""

    def __init__(self, indices: torch.Tensor, name: str = "data") -> None:
        super().__init__()
        self.indices, self.name = indices, name

    def _pyro_sample(self, msg: Any) -> None:
        if msg["name"] == self.name and site_is_subsample(msg):
            msg["value"] = self.indices


def reduce_gradients(params: list[torch.Tensor], loss: float, world_size: int) -> float:
    """Average the gradients of ``params`` (in place) and ``loss`` over the ranks, in one
    flat ``all_reduce``; a parameter without a gradient counts as a zero gradient."""
    import torch.distributed as dist

    if not params:
        return loss
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    dtype = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    flat = torch.cat([g.reshape(-1).to(dtype) for g in grads]
                     + [torch.tensor([loss], dtype=dtype, device=grads[0].device)])
    try:
        dist.all_reduce(flat)
    except RuntimeError as error:
        raise DistributedError(_dead_rank_message(error)) from error
    flat /= world_size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
        offset += n
    return float(flat[-1])


def broadcast_parameters(params: list[torch.Tensor]) -> None:
    """Every rank takes rank 0's parameter values."""
    import torch.distributed as dist

    try:
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)
    except RuntimeError as error:
        raise DistributedError(_dead_rank_message(error)) from error


def step_seed(seed: int, rank: int, step: int) -> int:
    """The torch seed of ``rank`` before step ``step`` (distinct per rank and step)."""
    return (seed * 1_000_003 + rank * 7_919 + step) % (2 ** 63 - 1)


def _dead_rank_message(error: BaseException) -> str:
    rank, world = rank_and_world()
    return (f"rank {rank} of {world}: a collective failed ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); another rank probably "
            "died or stopped answering; see its output above, fix the cause and resume "
            "from the last checkpoint (ppl-gen fit --resume DIR)")


# --- MCMC chains across processes ----------------------------------------------------------

def chain_blocks(num_chains: int, world_size: int) -> list[int]:
    """Chains per rank: contiguous blocks, the first ranks taking one more when the count
    does not divide."""
    base, extra = divmod(num_chains, world_size)
    return [base + (r < extra) for r in range(world_size)]


@dataclass
class ChainShard:
    """This rank's block of one batch of chains that runs in lockstep over every rank
    (ChEES under ``distributed=True``).

    Every rank holds the whole batch's state — positions, step sizes, metric, trajectory
    length, the random generator — and draws the whole batch's random numbers, but runs
    the leapfrog (the model's gradients: the cost) only for its contiguous block
    ``[lo, hi)``; :meth:`gather` then gives every rank every chain's new values, so the
    adaptation, which pools over chains (the trajectory-length gradient, the mass matrix,
    T's floor and cap), is one batch's adaptation on every rank, and the result does not
    depend on the number of processes (bit for bit where a block's arithmetic equals the
    whole batch's). One ``all_gather`` per iteration, of 3 D + 1 numbers per chain."""

    rank: int
    blocks: list[int]
    backend: str = "gloo"

    @property
    def lo(self) -> int:
        return sum(self.blocks[:self.rank])

    @property
    def hi(self) -> int:
        return self.lo + self.blocks[self.rank]

    def local(self, value: torch.Tensor) -> torch.Tensor:
        """This rank's chains of a (C, ...) tensor."""
        return value[self.lo:self.hi]

    def gather(self, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each (local chains, ...) tensor as the whole batch's (C, ...), in chain order,
        on every rank (one collective for all of them)."""
        import torch.distributed as dist

        if len(self.blocks) == 1:
            return values
        rows = values[0].shape[0]
        flat = torch.cat([v.reshape(rows, -1).to(values[0].dtype) for v in values], 1)
        widest = max(self.blocks)
        if rows < widest:  # all_gather wants equal shapes: pad the smaller blocks
            flat = torch.cat([flat, flat.new_zeros(widest - rows, flat.shape[1])])
        parts = [torch.empty_like(flat) for _ in self.blocks]
        try:
            dist.all_gather(parts, flat.contiguous())
        except RuntimeError as error:
            raise DistributedError(_dead_rank_message(error)) from error
        whole = torch.cat([part[:n] for part, n in zip(parts, self.blocks)])
        out, offset = [], 0
        for v in values:
            width = v[0].numel() if v.dim() > 1 else 1
            out.append(whole[:, offset:offset + width].reshape(whole.shape[0], *v.shape[1:])
                       .to(v.dtype))
            offset += width
        return tuple(out)

    def broadcast(self, *values: torch.Tensor) -> None:
        """Every rank takes rank 0's values (in place), e.g. the starting points: the
        ranks compute them alike, but a rank whose arithmetic differed (another GPU
        model) would otherwise go on from its own."""
        import torch.distributed as dist

        if len(self.blocks) == 1:
            return
        try:
            for value in values:
                dist.broadcast(value, src=0)
        except RuntimeError as error:
            raise DistributedError(_dead_rank_message(error)) from error

    def broadcast_generator(self, generator: torch.Generator) -> None:
        """Every rank's generator in rank 0's state (the batch's random numbers are drawn
        on every rank and must be the same ones)."""
        if len(self.blocks) == 1:
            return
        saved = generator.get_state()
        if self.backend == "nccl":
            moved = saved.to(torch.device("cuda", torch.cuda.current_device()))
            self.broadcast(moved)
            saved = moved.cpu()
        else:
            self.broadcast(saved)
        generator.set_state(saved)

    def largest(self, *values: float) -> list[float]:
        """The largest of each number over the ranks (so decisions that depend on a
        rank's own timing, such as whether to compile, are the same on every rank)."""
        import torch.distributed as dist

        if len(self.blocks) == 1:
            return [float(v) for v in values]
        numbers = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if self.backend == "nccl":
            numbers = numbers.to(torch.device("cuda", torch.cuda.current_device()))
        try:
            dist.all_reduce(numbers, op=dist.ReduceOp.MAX)
        except RuntimeError as error:
            raise DistributedError(_dead_rank_message(error)) from error
        return numbers.cpu().tolist()


def chain_shard(num_chains: int, device: torch.device, timeout_seconds: float,
                engine: str = "chees") -> ChainShard:
    """Join the process group and return this rank's :class:`ChainShard` of
    ``num_chains`` (every rank needs at least one chain)."""
    group = join(device, timeout_seconds)
    blocks = chain_blocks(num_chains, group.world_size)
    if min(blocks) < 1:
        raise ValueError(f"{num_chains} chains over {group.world_size} processes leaves a "
                         f"process with none; engine {engine!r} needs at least one per "
                         f"process: use num_chains >= {group.world_size} or fewer processes")
    return ChainShard(group.rank, blocks, group.backend)


#: How :func:`merge_chain_infos` combines a key of the ranks' ``info``.
_SUMMED = ("gradient_evaluations", "sampling_gradient_evaluations")
_PER_CHAIN = ("step_size_per_chain",)
_SLOWEST = ("wall_time",)
#: Recomputed from the gathered draws' statistics, whatever the ranks said.
_FROM_STATS = ("num_divergences", "divergences_per_chain", "mean_accept_prob")


def _same(values: list[Any]) -> bool:
    import numpy as np

    first = values[0]
    for value in values[1:]:
        if isinstance(first, np.ndarray) or isinstance(value, np.ndarray):
            if not np.array_equal(np.asarray(first), np.asarray(value)):
                return False
            continue
        if torch.is_tensor(first) or torch.is_tensor(value):
            if not (torch.is_tensor(first) and torch.is_tensor(value)
                    and first.shape == value.shape and torch.equal(first.cpu(), value.cpu())):
                return False
            continue
        try:
            if bool(value != first):
                return False
        except (TypeError, ValueError, RuntimeError):  # arrays, odd objects: compare reprs
            if repr(value) != repr(first):
                return False
    return True


def merge_chain_infos(infos: list[dict[str, Any]], stats: dict[str, Any],
                      blocks: list[int]) -> dict[str, Any]:
    """One ``info`` for chains run as blocks on several ranks, key by key: divergences and
    the acceptance rate recomputed from the gathered ``stats``; gradient counts summed (the
    work of every batch); per-chain lists concatenated in chain order; the wall time of the
    slowest rank; any other key kept once when every rank agrees, and otherwise rank 0's
    value at the top level with every rank's under ``info["distributed"]["per_rank"][key]``
    (a ChEES batch adapts its own trajectory length and metric: nothing is silently one
    rank's)."""
    info: dict[str, Any] = {}
    per_rank: dict[str, list[Any]] = {}
    keys = list(dict.fromkeys(k for i in infos for k in i))
    for key in keys:
        values = [i.get(key) for i in infos]
        if key in _FROM_STATS or key == "distributed":
            continue
        if key in _SUMMED:
            info[key] = int(sum(v or 0 for v in values))
        elif key in _PER_CHAIN:
            info[key] = [s for v in values for s in (v or [])]
        elif key in _SLOWEST:
            info[key] = max(float(v) for v in values if v is not None)
        else:
            info[key] = values[0]
            if not _same(values):
                per_rank[key] = values
    if "diverging" in stats:
        info["num_divergences"] = int(stats["diverging"].sum())
        info["divergences_per_chain"] = stats["diverging"].sum(1).tolist()
    if "accept_prob" in stats:
        info["mean_accept_prob"] = float(stats["accept_prob"].mean())
    info["distributed"] = {
        "chains_per_rank": list(blocks),
        "wall_time_per_rank": [float(i.get("wall_time", float("nan"))) for i in infos],
        "per_rank": per_rank}
    return info


def run_chains(engine: Any, problem: Any, config: Any, seed: int,
               loop: dict[str, Any]) -> Any:
    """``config.num_chains`` chains of ``engine`` over the ranks, one ``FitResult`` with
    every chain in chain order on every rank, the same for any number of processes.

    NUTS and HMC: this rank runs its block of chains on its own and the draws are
    gathered; chain ``c`` is seeded ``seed + 1000 c`` whichever rank runs it (the local
    run's seed is shifted by its first chain). A lockstep engine (ChEES) runs the whole
    batch on every rank with the gradients split by :class:`ChainShard`: one adaptation
    from every chain, as in one process."""
    import dataclasses

    import numpy as np
    import torch.distributed as dist

    from .base import FitResult

    group = join(problem.device, config.distributed_timeout)
    if getattr(engine, "lockstep", False):
        return _run_lockstep(engine, problem, config, seed, loop, group)
    blocks = chain_blocks(config.num_chains, group.world_size)
    if min(blocks) < 1:
        raise ValueError(f"{config.num_chains} chains over {group.world_size} processes "
                         f"leaves a process with none; engine {engine.name!r} needs at "
                         f"least one per process: use num_chains >= {group.world_size} "
                         "or fewer processes")
    first = sum(blocks[:group.rank])
    local = dataclasses.replace(config, num_chains=blocks[group.rank], distributed=False,
                                progress_bar=config.progress_bar and group.rank == 0)
    result = engine.run(problem, local, seed + 1000 * first, **loop)

    def cpu(value: Any) -> Any:
        return value.detach().cpu() if torch.is_tensor(value) else value

    mine = {"samples": {k: cpu(v) for k, v in result.samples.items()},
            "sample_stats": result.sample_stats, "loss": result.history["loss"],
            "info": {k: cpu(v) for k, v in result.info.items()}}
    gathered: list[Any] = [None] * group.world_size
    try:
        dist.all_gather_object(gathered, mine)
    except RuntimeError as error:
        raise DistributedError(_dead_rank_message(error)) from error
    device = problem.device
    samples = {k: torch.cat([g["samples"][k] for g in gathered]).to(device)
               for k in mine["samples"]}
    stats = {k: np.concatenate([g["sample_stats"][k] for g in gathered])
             for k in mine["sample_stats"]}
    weights = np.asarray(blocks, dtype=float) / config.num_chains
    loss = sum(w * np.asarray(g["loss"]) for w, g in zip(weights, gathered))
    info = merge_chain_infos([g["info"] for g in gathered], stats, blocks)
    info["distributed"].update(world_size=group.world_size, backend=group.backend)
    return FitResult(result.engine, problem, config, seed, {"loss": loss},
                     samples=samples, sample_stats=stats, info=info)


def _run_lockstep(engine: Any, problem: Any, config: Any, seed: int,
                  loop: dict[str, Any], group: Group) -> Any:
    """A lockstep engine's run under ``distributed=True``: its ``init`` finds the group
    (``config.distributed``) and makes this rank's :class:`ChainShard`; the loop runs as
    in one process (rank 0 alone writes checkpoints) and ends with the whole result on
    every rank. What differs between ranks (how the leapfrog was compiled, the wall
    time) is listed per rank."""
    import torch.distributed as dist

    # Too few chains for the ranks: the engine's init refuses (chain_shard), before work.
    result = engine.run(problem, config, seed, **loop)
    mine = {k: result.info.get(k) for k in ("compiled", "compile_reason", "wall_time")}
    agreed = ("compiled", "compile_reason")
    gathered: list[Any] = [None] * group.world_size
    try:
        dist.all_gather_object(gathered, mine)
    except RuntimeError as error:
        raise DistributedError(_dead_rank_message(error)) from error
    per_rank = {k: [g[k] for g in gathered] for k in agreed
                if not _same([g[k] for g in gathered])}
    result.info["distributed"] = {
        "chains_per_rank": chain_blocks(config.num_chains, group.world_size),
        "world_size": group.world_size, "backend": group.backend,
        "adaptation": "pooled over every rank's chains (one batch)",
        "wall_time_per_rank": [float(g["wall_time"] or float("nan")) for g in gathered],
        "per_rank": per_rank}
    result.info["wall_time"] = max(float(g["wall_time"] or 0.0) for g in gathered)
    return result
