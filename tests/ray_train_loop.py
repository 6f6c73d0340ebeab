"""A minimal Ray Train loop: a tiny LeRobot ACT trained on a local dataset, reporting a LeRobot
``pretrained_model`` checkpoint every ``report_every`` steps."""

import tempfile
from pathlib import Path


def train_tiny_act(config: dict) -> None:
    """Train a tiny ACT on ``config['dataset_root']`` and report loss (+ checkpoints) to Ray Train."""
    import ray.train
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from tests.tiny_policies import tiny_act

    root = Path(config["dataset_root"])
    policy, pre, post = tiny_act(root)
    meta = LeRobotDataset("trustai/dist", root=root).meta
    delta = {"action": [i / meta.fps for i in range(policy.config.chunk_size)]}
    dataset = LeRobotDataset("trustai/dist", root=root, delta_timestamps=delta)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    batches = iter(loader)
    for step in range(1, config["steps"] + 1):
        batch = next(batches)
        batch = pre(batch)
        loss, _ = policy.forward(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        metrics = {"loss": loss.item(), "step": step}
        if step % config["report_every"] == 0:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "pretrained_model"
                policy.save_pretrained(folder)
                pre.save_pretrained(folder)
                post.save_pretrained(folder)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)
