"""Differentially private LeRobot training (privacy.dp): real LeRobot ACT, real Opacus, on CPU.

One run with the shipped ``dp-training`` pack goes to completion; one run with fixed noise and a budget
that allows a single step stops cleanly. Unit tests cover the per-frame gradients on ACT, the empty
Poisson draw, the refusal of layers Opacus cannot train, ghost clipping (the same clipped gradients
and the same ε as per-frame gradients), and the CLI's exit code for a budget stop.
"""

import dataclasses
import json
import math
import sqlite3
from pathlib import Path

import pytest
import torch
from lerobot.datasets.factory import make_train_eval_datasets
from lerobot.policies import make_policy, make_pre_post_processors
from lerobot.policies.act.modeling_act import ACTPolicy
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, default_collate
from trustai.audits.privacy.dp_budget import DPParams, PrivacyBudgetExhausted, dp_epsilon
from trustai.training_hooks.dp_clipping import GhostClippingHooks, GhostClippingOptimizer, plan_clipping
from trustai.training_hooks.dp_layers import (
    LayoutAwareHooks,
    PhantomCollate,
    dp_compatible,
    probe_layout,
    weigh_phantoms,
)
from trustai.training_hooks.lerobot_train import governed_train, parse_train_config
from trustai.training_hooks.privacy import LeRobotRun, privatize
from typer.testing import CliRunner

from trustai.attest.keys import generate_keypair
from trustai.attest.verify import verify_checkpoint
from trustai.cli.demo import demo_train_flags
from trustai.core.ledger import Ledger
from trustai.errors import TrustaiUserError
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import load_pack, parse_pack

NOISE = 1.0
SAMPLE_RATE = 0.1  # batch 8 of the 80 frames below
MECHANISM = ("noise_multiplier", "sample_rate", "delta", "accountant")


def dp_records(run_dir: Path, kind: str) -> list[dict]:
    """The privacy.dp evidence or finding records of a run's ledger, in order."""
    db = sqlite3.connect(run_dir / "trustai" / "ledger.sqlite")
    rows = [
        json.loads(r[0])
        for r in db.execute("SELECT payload FROM records WHERE kind = ? ORDER BY seq", (kind,))
    ]
    db.close()
    return [r for r in rows if r["audit"] == "privacy.dp"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dp")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(  # small frames: per-frame conv gradients dominate DP step time
        tmp / "dataset", repo_id="trustai/test", episodes=4, frames_per_episode=20, image_size=(24, 32)
    )
    return tmp, dataset


@pytest.fixture(scope="module")
def finished(setup):
    """Two DP steps with the shipped dp-training pack, a checkpoint after each."""
    tmp, dataset = setup
    run_dir = governed_train(
        demo_train_flags(dataset, tmp / "finished", steps=2, save_freq=1),
        load_pack("dp-training"),
        tmp / "k.pem",
    )
    return run_dir, tmp / "k.pub"


@pytest.fixture(scope="module")
def stopped(setup):
    """Fixed noise and a budget between ε after one step and ε after two: training stops after step 1."""
    tmp, dataset = setup
    mechanism = {"noise_multiplier": NOISE, "sample_rate": SAMPLE_RATE, "delta": 1e-5, "accountant": "prv"}
    target = (dp_epsilon(1, **mechanism) + dp_epsilon(2, **mechanism)) / 2
    pack = parse_pack(
        f"""
name: dp-tight
checks:
  - id: dp
    audit: privacy.dp
    stage: train
    params: {{target_epsilon: {target}, delta: 1.0e-5, noise_multiplier: {NOISE}, accountant: prv}}
    thresholds:
      epsilon: {{max: {target}}}
      budget_exhausted: {{max: 0}}
    severity: block
    references: [nist-ai-rmf:MEASURE-2.10]
""",
        "dp-tight.yaml",
    )
    with pytest.raises(PrivacyBudgetExhausted) as stop:
        governed_train(demo_train_flags(dataset, tmp / "stopped", steps=4, save_freq=2), pack, tmp / "k.pem")
    return tmp / "stopped", tmp / "k.pub", stop.value, target


def test_dp_training_reports_finite_epsilon_growing_with_steps(finished):
    run_dir, pub = finished
    evidence = dp_records(run_dir, "evidence")
    assert [e["inputs"]["step"] for e in evidence] == [1, 2]
    (first, second) = (e["metrics"] for e in evidence)
    assert 0 < first["epsilon"] < second["epsilon"] <= 8.0 and math.isfinite(second["epsilon"])
    for key in ("delta", "noise_multiplier", "max_grad_norm", "sample_rate", "steps"):
        assert second[key] > 0, key
    assert (second["steps"], second["sample_rate"], second["budget_exhausted"]) == (2, SAMPLE_RATE, False)
    assert [r["step"] for r in evidence[1]["tables"]["epsilon_by_step"]] == [1, 2]
    assert evidence[1]["tables"]["mechanism"][0]["accountant"] == "prv"
    # The shipped pack clips with ghost norms where ACT's layers allow it, per-frame gradients elsewhere.
    assert evidence[1]["tables"]["mechanism"][0]["clipping"] == "ghost"
    modes = {(r["type"], r["clipping"]) for r in evidence[1]["tables"]["clipping_layers"]}
    assert {("Linear", "ghost"), ("Conv2d", "ghost"), ("LayerNorm", "per-frame")} <= modes
    frozen = {r["parameter"] for r in evidence[1]["tables"]["frozen_parameters"]}
    assert frozen == {"model.encoder_1d_feature_pos_embed.weight", "model.decoder_pos_embed.weight"}
    assert all(f["status"] == "pass" for f in dp_records(run_dir, "finding"))
    for step in ("000001", "000002"):
        report = verify_checkpoint(run_dir / "checkpoints" / step, pub)
        assert report.ok, [(c.name, c.problems) for c in report.steps]


def test_card_states_epsilon_delta_accountant_and_privacy_unit(finished):
    run_dir, _ = finished
    model = run_dir / "checkpoints" / "000002" / "pretrained_model"
    privacy = json.loads((model / "trustai" / "card.json").read_text())["privacy"]
    assert privacy["accountant"] == "prv" and privacy["privacy_unit"] == "frame"
    assert privacy["delta"] == 1e-5 and 0 < privacy["epsilon"] <= privacy["target_epsilon"] == 8.0
    assert "one training frame" in privacy["guarantee"]
    assert "## Privacy" in (model / "README.md").read_text()


def test_dp_checkpoint_reloads_into_the_stock_act_policy(finished):
    run_dir, _ = finished
    policy = ACTPolicy.from_pretrained(run_dir / "checkpoints" / "000002" / "pretrained_model", strict=True)
    attention = policy.model.encoder.layers[0].self_attn
    assert isinstance(attention, nn.MultiheadAttention) and torch.isfinite(attention.in_proj_weight).all()


def test_budget_overrun_is_a_block_finding_and_stops_with_a_sealed_final_checkpoint(stopped):
    run_dir, pub, stop, target = stopped
    assert (stop.step, stop.steps_planned) == (1, 4) and stop.epsilon <= target
    assert stop.checkpoint == run_dir / "checkpoints" / "000001"
    assert "privacy budget exhausted" in str(stop)
    report = verify_checkpoint(stop.checkpoint, pub)
    assert report.ok, [(c.name, c.problems) for c in report.steps]
    assert Ledger(run_dir / "trustai" / "ledger.sqlite", create=False).verify().ok
    (finding,) = dp_records(run_dir, "finding")
    assert (finding["status"], finding["severity"]) == ("fail", "block")
    assert "budget_exhausted" in finding["message"]
    card = json.loads((stop.checkpoint / "pretrained_model" / "trustai" / "card.json").read_text())
    assert card["governance"]["gate"] == "blocked" and card["model_details"]["release"] is True
    assert card["privacy"]["budget_exhausted"] is True and card["privacy"]["steps"] == 1
    kinds = [
        r[0]
        for r in sqlite3.connect(run_dir / "trustai" / "ledger.sqlite").execute("SELECT kind FROM records")
    ]
    assert "privacy.stop" in kinds and kinds[-2:] == ["run.end", "anchor"]


def test_cli_reports_a_budget_stop_with_exit_code_1(monkeypatch, tmp_path):
    import trustai.training_hooks.lerobot_train

    from trustai.cli import app

    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    stop = PrivacyBudgetExhausted(
        step=3, steps_planned=6, epsilon=0.9, params=DPParams(target_epsilon=1.0), checkpoint=tmp_path / "c"
    )

    def stopping(*args, **kwargs):
        raise stop

    monkeypatch.setattr(trustai.training_hooks.lerobot_train, "governed_train", stopping)
    result = CliRunner().invoke(app, ["train", "--key", str(tmp_path / "k.pem"), "--", "--steps=6"])
    assert result.exit_code == 1
    assert "training stopped" in result.output and "privacy budget exhausted" in result.output


@pytest.fixture(scope="module")
def act(setup):
    """A tiny ACT without dropout (so per-frame passes are comparable), with its LeRobot preprocessing."""
    tmp, dataset_root = setup
    flags = [*demo_train_flags(dataset_root, tmp / "unused", steps=1, save_freq=1), "--policy.dropout=0.0"]
    cfg = parse_train_config(flags)
    dataset, _ = make_train_eval_datasets(cfg)
    policy = make_policy(cfg=cfg.policy, ds_meta=dataset.meta)
    pre, post = make_pre_post_processors(policy_cfg=cfg.policy, dataset_stats=dataset.meta.stats)
    return policy, dataset, LeRobotRun(cfg=cfg, preprocessor=pre, postprocessor=post)


def test_per_frame_gradients_of_sequence_first_act_match_one_frame_backward_passes(act):
    policy, dataset, run = act
    policy.train()
    fixed, replaced = dp_compatible(policy)
    assert {r["by"] for r in replaced} == {"DPMultiheadAttention"}
    frames = [dataset[i] for i in (0, 21, 42)]  # no padded actions: one-frame losses average the same way
    layout = probe_layout(
        fixed, run.batch(frames[:1], default_collate), run.batch(frames[:2], default_collate)
    )
    assert {dim for dim in layout.batch_dims.values()} == {
        0,
        1,
    }  # CNN batch-first, transformer sequence-first
    for name, _ in layout.frozen:
        fixed.get_parameter(name).requires_grad_(False)
    hooks = LayoutAwareHooks(fixed, layout.batch_dims)
    fixed.forward = weigh_phantoms(fixed.forward, hooks)
    fixed.forward(run.batch(frames, default_collate))[0].backward()
    params = [(n, p) for n, p in fixed.named_parameters() if p.requires_grad]
    per_frame = {n: p.grad_sample.clone() for n, p in params}

    # An empty Poisson draw: one phantom frame, weighed by zero, so only DP noise moves the weights.
    phantom = run.batch([], PhantomCollate(default_collate, dataset))
    assert phantom["index"].tolist() == [-1]
    fixed.zero_grad()
    for _, param in params:
        param.grad_sample = None
    fixed.forward(phantom)[0].backward()
    assert all(param.grad_sample.shape[0] == 1 and not param.grad_sample.any() for _, param in params)

    hooks.cleanup()
    for i, frame in enumerate(frames):
        fixed.zero_grad()
        fixed.forward(run.batch([frame], default_collate))[0].backward()
        scale = max(param.grad.abs().max().item() for _, param in params)
        for name, param in params:  # attention key biases get ~1e-9 (softmax ignores them): float noise
            torch.testing.assert_close(per_frame[name][i], param.grad, atol=1e-5 * scale, rtol=1e-3)


class RunningNorm(nn.Module):
    """A trainable layer with running statistics in a buffer: Opacus refuses it, and cannot fix it."""

    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.register_buffer("running_mean", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.running_mean) * self.weight


class Refused(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)  # fixable: becomes GroupNorm
        self.norm = RunningNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.bn(self.body(x)))


def test_layers_opacus_cannot_handle_are_named_and_nothing_is_wrapped():
    model = Refused().eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=4)
    run = LeRobotRun(cfg=type("Cfg", (), {"steps": 10})(), preprocessor=lambda b: b, postprocessor=None)
    with pytest.raises(TrustaiUserError) as refused:
        privatize(model, optimizer, loader, None, params=DPParams(target_epsilon=8.0), run=run)
    message = str(refused.value)
    assert "norm (RunningNorm)" in message and "bn (" not in message
    assert type(model.bn) is nn.BatchNorm1d and not model.training
    assert not any(hasattr(p, "grad_sample") or hasattr(p, "_forward_counter") for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert not model._forward_hooks and not any(m._backward_hooks for m in model.modules())
    assert type(optimizer) is torch.optim.AdamW
    assert [p for g in optimizer.param_groups for p in g["params"]] == list(model.parameters())


def test_a_budget_that_does_not_cover_one_step_is_refused_before_training():
    model = nn.Sequential(nn.Linear(4, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=4)
    run = LeRobotRun(cfg=type("Cfg", (), {"steps": 10})(), preprocessor=lambda b: b, postprocessor=None)
    params = DPParams(target_epsilon=0.01, noise_multiplier=0.5)
    with pytest.raises(TrustaiUserError, match="does not cover a single step"):
        privatize(model, optimizer, loader, None, params=params, run=run)
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())


class TinyPolicy(nn.Module):
    """LeRobot-shaped: ``forward(batch) -> (loss, outputs)``, a sequence-first attention layer, and learned
    queries read straight from an embedding's weight (as ACT reads its position embeddings)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.attn = nn.MultiheadAttention(8, 2)
        self.queries = nn.Embedding(4, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        tokens = self.embed(batch["x"]).transpose(0, 1)
        queries = self.queries.weight.unsqueeze(1).expand(-1, tokens.shape[1], -1)
        out, _ = self.attn(queries, tokens, tokens)
        prediction = self.head(out.transpose(0, 1)).mean(dim=(1, 2))
        return ((prediction - batch["y"]) ** 2).mean(), {}


def test_optimizer_is_rebuilt_per_group_the_scheduler_follows_and_weights_save_in_torch_layout():
    torch.manual_seed(0)
    frames = [{"x": torch.randn(5, 3), "y": torch.randn(()), "index": torch.tensor(i)} for i in range(40)]
    policy = TinyPolicy()
    groups = [
        {"params": [*policy.embed.parameters(), *policy.attn.parameters(), *policy.queries.parameters()]},
        {"params": list(policy.head.parameters()), "lr": 1e-2, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda s: 1.0, lambda s: 0.5])
    run = LeRobotRun(cfg=type("Cfg", (), {"steps": 5})(), preprocessor=lambda b: b, postprocessor=None)
    loader = DataLoader(frames, batch_size=8)
    private = privatize(policy, optimizer, loader, scheduler, params=DPParams(target_epsilon=8.0), run=run)

    rebuilt = private.optimizer.original_optimizer
    assert type(rebuilt) is torch.optim.AdamW and scheduler.optimizer is rebuilt
    assert [g["lr"] for g in rebuilt.param_groups] == [1e-3, 5e-3]
    assert [g["weight_decay"] for g in rebuilt.param_groups] == [0.01, 0.0]
    query_weight = private.policy.get_parameter("attn.qlinear.weight")
    assert any(p is query_weight for p in rebuilt.param_groups[0]["params"])
    assert [r["parameter"] for r in private.frozen] == ["queries.weight"]
    assert [r["by"] for r in private.replaced] == ["DPMultiheadAttention"]
    for _, batch in zip(range(3), private.dataloader, strict=False):
        private.policy.forward(batch)[0].backward()
        private.optimizer.step()
        private.optimizer.zero_grad()
        scheduler.step()
    assert private.steps == 3 and 0 < private.state().steps_within_budget == 5

    stock = TinyPolicy()
    stock.load_state_dict(private.policy.state_dict(), strict=True)
    torch.testing.assert_close(stock.head.weight, private.policy.head.weight)
    assert not torch.equal(stock.attn.in_proj_weight, policy.attn.in_proj_weight)  # the DP steps moved it


def test_ghost_clipping_gives_the_per_frame_clipped_gradients_of_act(act):
    policy, dataset, run = act
    policy.train()
    fixed, _ = dp_compatible(policy)
    frames = [dataset[i] for i in (0, 21, 42)]
    layout = probe_layout(
        fixed, run.batch(frames[:1], default_collate), run.batch(frames[:2], default_collate)
    )
    for name, _ in layout.frozen:
        fixed.get_parameter(name).requires_grad_(False)
    ghost, rows = plan_clipping(layout, {m: n for n, m in fixed.named_modules()})
    modes = {(r["type"], r["clipping"]) for r in rows}
    assert {("Linear", "ghost"), ("Conv2d", "ghost"), ("Conv2d", "per-frame")} <= modes
    # A layer without a ghost norm falls back to per-frame gradients, named with the reason.
    assert {"clipping": "per-frame", "why": "no ghost norm for this LayerNorm"}.items() <= next(
        r for r in rows if r["type"] == "LayerNorm"
    ).items()
    params = [p for p in fixed.parameters() if p.requires_grad]
    batch = run.batch(frames, default_collate)

    def clipped(max_grad_norm: float, ghostly: bool) -> list[torch.Tensor]:
        hooks = (
            GhostClippingHooks(fixed, layout.batch_dims, ghost)
            if ghostly
            else LayoutAwareHooks(fixed, layout.batch_dims)
        )
        mechanism = {"noise_multiplier": 0.0, "max_grad_norm": max_grad_norm, "expected_batch_size": 3}
        sgd = torch.optim.SGD(params, lr=0.0)
        optimizer = (
            GhostClippingOptimizer(sgd, hooks=hooks, **mechanism)
            if ghostly
            else DPOptimizer(sgd, **mechanism)
        )
        optimizer.zero_grad()
        fixed.forward(batch)[0].backward()
        optimizer.pre_step()
        hooks.remove_hooks()
        return [p.grad.clone() for p in params]

    for max_grad_norm in (0.01, 1e6):  # every frame clipped; none clipped
        per_frame, ghostly = clipped(max_grad_norm, False), clipped(max_grad_norm, True)
        scale = max(g.abs().max().item() for g in per_frame)
        for a, b in zip(per_frame, ghostly, strict=True):  # key biases get ~1e-10 (softmax ignores them)
            torch.testing.assert_close(b, a, atol=1e-5 * scale, rtol=1e-3)


def test_ghost_clipping_trains_and_spends_the_same_epsilon_as_per_frame_gradients():
    def train(clipping: str) -> tuple[float, dict]:
        torch.manual_seed(0)
        frames = [{"x": torch.randn(5, 3), "y": torch.randn(()), "index": torch.tensor(i)} for i in range(40)]
        policy = TinyPolicy()
        optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
        run = LeRobotRun(cfg=type("Cfg", (), {"steps": 4})(), preprocessor=lambda b: b, postprocessor=None)
        params = DPParams(target_epsilon=50.0, noise_multiplier=NOISE, clipping=clipping)
        private = privatize(policy, optimizer, DataLoader(frames, batch_size=8), None, params=params, run=run)
        before = private.policy.head.weight.detach().clone()
        for _, batch in zip(range(3), private.dataloader, strict=False):
            private.policy.forward(batch)[0].backward()
            private.optimizer.step()
            private.optimizer.zero_grad()
        assert not torch.equal(before, private.policy.head.weight)  # it trained
        return private.engine.accountant.get_epsilon(1e-5), dataclasses.asdict(private.state())

    ghost_epsilon, ghost = train("ghost")
    per_frame_epsilon, per_frame = train("per-frame")
    assert ghost["steps"] == per_frame["steps"] == 3
    assert ghost_epsilon == per_frame_epsilon == dp_epsilon(3, **{k: ghost[k] for k in MECHANISM})
    assert (ghost["clipping"], per_frame["clipping"]) == ("ghost", "per-frame")
    layers = {r["layer"]: r["clipping"] for r in ghost["clipping_layers"]}
    assert layers["attn.qlinear"] == "ghost"  # 4 positions: Gram matrices smaller than its 8×8 weight
    assert layers["head"] == "per-frame"  # 4 positions: its 8 weights are smaller than the Gram matrices
    assert {r["clipping"] for r in per_frame["clipping_layers"]} == {"per-frame"}
