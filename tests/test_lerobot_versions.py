"""One integration for both of LeRobot's ways of building the training accelerator.

LeRobot 0.6.1 (installed) takes ``train(cfg, accelerator=...)``; LeRobot main (0.6.2) builds it inside
``train(cfg)`` with ``make_accelerator(cfg)``, imported into ``lerobot.scripts.lerobot_train``. The
second shape is reproduced here on 0.6.1's real trainer: a ``make_accelerator`` that configures the
Accelerator as a factory would (gradient accumulation plugin, DDP kwargs), and a ``train(cfg)`` that calls
it. Against LeRobot main's own source it was run by hand (see docs/distributed.md), never in CI."""

import inspect

import pytest
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, GradientAccumulationPlugin
from lerobot.scripts import lerobot_train
from trustai.training_hooks.lerobot import GovernedAccelerator
from trustai.training_hooks.lerobot_train import governed_train

from trustai import layout
from trustai.attest.keys import generate_keypair
from trustai.attest.verify import verify_checkpoint
from trustai.cli.demo import demo_train_flags
from trustai.core.run_record import RunLedger
from trustai.errors import TrustaiUserError
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import parse_pack

PACK = """
name: provenance-only
version: 1
checks:
  - id: provenance
    audit: provenance.manifest
    stage: checkpoint
    thresholds:
      seed_recorded: {min: 1}
      train_config_recorded: {min: 1}
    severity: block
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("versions")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(
        tmp / "dataset", repo_id="trustai/test", episodes=2, frames_per_episode=12
    )
    return tmp, dataset


def test_factory_built_accelerator_is_governed_with_its_settings(setup, monkeypatch):
    tmp, dataset = setup
    built: list[Accelerator] = []
    plain_train = lerobot_train.train
    plain_processors = lerobot_train.make_pre_post_processors

    def make_accelerator(cfg):  # LeRobot main's factory shape: settings come from the config
        accelerator = Accelerator(
            step_scheduler_with_optimizer=False,
            gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=2, sync_with_dataloader=False),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True, static_graph=True)],
            cpu=True,
        )
        built.append(accelerator)
        return accelerator

    def train(cfg):  # LeRobot main's train(cfg): no accelerator parameter
        return plain_train(cfg, accelerator=lerobot_train.make_accelerator(cfg))

    monkeypatch.setattr(lerobot_train, "make_accelerator", make_accelerator, raising=False)
    monkeypatch.setattr(lerobot_train, "train", train)
    flags = demo_train_flags(dataset, tmp / "run", steps=4, save_freq=2)
    run_dir = governed_train(flags, parse_pack(PACK, "p.yaml"), tmp / "k.pem")

    assert lerobot_train.make_accelerator is make_accelerator  # the hook points are given back
    assert lerobot_train.make_pre_post_processors is plain_processors
    [accelerator] = built
    assert isinstance(accelerator, GovernedAccelerator)  # the factory's own object, adopted
    assert accelerator.gradient_accumulation_steps == 2
    assert accelerator.ddp_handler.static_graph is True
    ledger = RunLedger.load(layout.ledger_path(run_dir))
    sealed = {ledger.checkpoint_folder(card).parent.name for card in ledger.cards}
    assert {"000002", "000004"} <= sealed
    for checkpoint in ("000002", "000004"):
        report = verify_checkpoint(run_dir / "checkpoints" / checkpoint / "pretrained_model", tmp / "k.pub")
        assert report.ok, report


def test_lerobot_without_either_hook_point_is_refused(setup, monkeypatch):
    tmp, dataset = setup

    def train(cfg):  # a future trainer trustai cannot govern: it must not train ungoverned
        raise AssertionError("trained without governance")

    monkeypatch.setattr(lerobot_train, "train", train)
    assert not hasattr(lerobot_train, "make_accelerator")
    assert "accelerator" not in inspect.signature(lerobot_train.train).parameters
    with pytest.raises(TrustaiUserError, match="neither takes accelerator= nor builds it"):
        governed_train(
            demo_train_flags(dataset, tmp / "refused", steps=2, save_freq=2),
            parse_pack(PACK, "p.yaml"),
            tmp / "k.pem",
        )
