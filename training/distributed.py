"""Training on several processes with torchrun: PyTorch's DistributedDataParallel, NCCL on CUDA, gloo on CPU.

    torchrun --standalone --nproc_per_node N main.py train [flags]          # one machine, N processes
    torchrun --nnodes M --node_rank K --rdzv_backend c10d --rdzv_endpoint HOST:PORT \
             --nproc_per_node N main.py train [flags]                         # M machines

`Dist` is the one place that knows about ranks. Plain `python main.py train` gets a Dist of world size 1 that
makes no process group, and every method below is then a no-op, so the training loop has one code path.

The global batch stays --batch-size: every rank builds the same length-bucketed batch (same seed, same epoch)
and takes its own slice of the poems; the loss is normalised by the global count of real target tokens, so N
ranks make the same update as one process with the whole batch (up to float summation order). Rank 0 alone
evaluates, samples, logs, plots and writes checkpoints (plain state_dicts); decisions (stop, evaluation
results) are shared from it so that every rank stops together.
Deliberately left out: sharded optimisers and model parallelism (the model is a few MB).
"""
import os

import torch
import torch.distributed as dist


class Dist:
    """The process group of a torchrun launch, or a stand-in of world size 1."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.main = self.rank == 0
        self.started = False

    def device(self, device):
        """Each rank's device: cuda:LOCAL_RANK under torchrun with CUDA, else the device asked for."""
        if self.world > 1 and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def start(self, device):
        if self.world > 1 and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.started = True

    def stop(self):
        if self.started:
            dist.destroy_process_group()
            self.started = False

    def wrap(self, model, device):
        """The model DDP trains (gradients averaged across ranks), or the model itself."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, idx):
        """This rank's poems of a global batch, and whether it has any (a rank left without gets one poem to
        run, weighted 0, so that every rank takes part in the gradient all-reduce)."""
        mine = list(idx[self.rank::self.world])
        return (mine, True) if mine else (list(idx[:1]), False)

    def sum(self, values, device):
        """Element-wise sum over ranks of a list of numbers (float64)."""
        t = torch.tensor(values, dtype=torch.float64, device=device)
        if self.world > 1:
            dist.all_reduce(t)
        return t.tolist()

    def from_main(self, obj):
        """Rank 0's value of a picklable object, on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self):
        if self.world > 1:
            dist.barrier()
