"""The run itself: its `Accelerator` (logging, precision, accumulation), the optimizer and learning-rate
schedule from the shared options, and a clean end of a distributed run."""

from __future__ import annotations

import argparse
import logging
import os

import torch


def adamw_from_args(args: argparse.Namespace, parameters) -> torch.optim.AdamW:
    """AdamW with the shared `--learning_rate`/`--adam_*` options."""
    return torch.optim.AdamW(
        parameters,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )


def lr_scheduler_from_args(args: argparse.Namespace, optimizer, max_train_steps: int, num_processes: int):
    """diffusers' `get_scheduler` for `--lr_scheduler`/`--lr_warmup_steps`, before `accelerator.prepare`.

    A prepared scheduler steps once per process per optimizer step, hence the scaling by `num_processes`.
    """
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * num_processes,
        num_training_steps=max_train_steps * num_processes,
    )


def create_accelerator(args: argparse.Namespace):
    """The run's `Accelerator`: TensorBoard under `output_dir/logging_dir`, accumulation, precision.

    Also configures logging so every process logs its rank and only the main one logs at INFO.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    project_config = ProjectConfiguration(
        project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
    )
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=project_config,
        cpu=args.cpu,
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    if not accelerator.is_local_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
    return accelerator


def finish_training(accelerator) -> None:
    """`accelerator.end_training()` once the prepared models are gone; the caller drops its own references first.

    `end_training` destroys the process group. A DDP wrapper that outlives it leaves its reducer as the
    group's last owner, so gloo's worker threads are joined in the reducer's destructor with the GIL held, and
    a worker that needs the GIL to free a finished collective deadlocks the process at exit (seen in CI: two
    CPU processes, torch 2.13). Freed while the group is still registered, the reducer merely lets go of it,
    and the group is destroyed by `destroy_process_group`, whose destructor releases the GIL.
    """
    accelerator.wait_for_everyone()  # no collective is in flight
    accelerator.free_memory()  # accelerate's references to the wrappers, then a garbage collection
    accelerator.end_training()
