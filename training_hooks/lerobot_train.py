"""``trustai train``: LeRobot's own trainer, same flags and outputs, under governance.

The flags are parsed exactly as ``lerobot-train`` parses them (its ``parser.wrap``), then
``lerobot.scripts.lerobot_train.train`` runs with its accelerator governed (``train_governed``): on
LeRobot 0.6.1 a GovernedAccelerator configured as LeRobot would configure its own is passed in; on LeRobot
main, the accelerator LeRobot's ``make_accelerator`` factory builds is adopted as it is.
"""

import importlib
import inspect
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.error import URLError

from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

from trustai.errors import TrustaiUserError
from trustai.governance import TRAINING_RUNTIME, Governance
from trustai.packs import PolicyPack


def parse_train_config(flags: list[str]) -> Any:
    """Parse ``lerobot-train`` flags into a validated TrainPipelineConfig (output_dir resolved).

    Where torchcodec cannot load (no FFmpeg libraries), videos are decoded with ``pyav`` unless the
    flags name a ``--dataset.video_backend``: the decoder LeRobot falls back to, and the one trustai's
    own frame reader always uses (trustai.lerobot.frames), without LeRobot's ~100-line load traceback."""
    import lerobot.policies  # noqa: F401  (registers the policy types --policy.type names)
    from lerobot.configs import parser
    from lerobot.configs.train import TrainPipelineConfig

    @parser.wrap()
    def _parse(cfg: TrainPipelineConfig) -> TrainPipelineConfig:
        return cfg

    saved = sys.argv
    extra: list[str] = []
    # LeRobot's probe for a video decoder runs while the flags are parsed, whatever they say.
    probe = logging.getLogger("lerobot.utils.import_utils")
    probe_level = probe.level
    if not _torchcodec_loads():
        probe.setLevel(logging.ERROR)  # its warnings: every failed FFmpeg load, as a traceback
        if not any(f.startswith("--dataset.video_backend") for f in flags):
            extra = ["--dataset.video_backend=pyav"]
    sys.argv = ["lerobot-train", *flags, *extra]
    try:
        cfg = _parse()
        cfg.validate()
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise TrustaiUserError(
            f"lerobot-train flags rejected: {exc}",
            where=" ".join(flags),
            fix="fix the flag as lerobot-train would need it (lerobot-train --help)",
        ) from None
    except SystemExit as exc:
        raise TrustaiUserError(
            f"lerobot-train flags rejected (exit {exc.code})",
            where=" ".join(flags),
            fix="see the message above and lerobot-train --help",
        ) from None
    finally:
        sys.argv = saved
        probe.setLevel(probe_level)
    return cfg


def _torchcodec_loads() -> bool:
    """Whether torchcodec, LeRobot's preferred video decoder, loads here (it needs FFmpeg's libraries)."""
    try:
        importlib.import_module("torchcodec")
    except (ImportError, OSError, RuntimeError):  # what LeRobot's own probe catches
        return False
    return True


def check_dataset(root: Path) -> None:
    """Raise TrustaiUserError unless ``root`` is a LeRobot v3 dataset whose frame files hold every
    feature its meta/info.json declares (videos aside), vectors with the declared length."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trustai.lerobot.datasets import data_files, open_dataset_meta

    info = open_dataset_meta(root)
    fix = "rebuild the dataset, or restore meta/info.json and data/ from the same recording"
    for path in data_files(root):
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise TrustaiUserError(f"not a readable parquet file ({exc})", where=str(path), fix=fix) from None
        for key, feature in info.features.items():
            if not isinstance(feature, dict) or feature.get("dtype") == "video":
                continue
            if key not in schema.names:
                raise TrustaiUserError(
                    f"frame file lacks the column {key!r} that meta/info.json declares",
                    where=str(path),
                    fix=fix,
                )
            width = getattr(schema.field(key).type, "list_size", None)
            shape = feature.get("shape")
            if width is not None and isinstance(shape, list) and len(shape) == 1 and shape[0] != width:
                raise TrustaiUserError(
                    f"column {key!r} holds vectors of {width}, meta/info.json declares shape {shape}",
                    where=str(path),
                    fix=fix,
                )


def accelerator_kwargs(cfg: Any) -> dict[str, Any]:
    """Return the Accelerator arguments LeRobot's ``train`` would use for ``cfg``."""
    from accelerate.utils import DistributedDataParallelKwargs

    active = cfg.trainable_config
    precision = {"bfloat16": "bf16", "float16": "fp16", "float32": "no"}.get(getattr(active, "dtype", None))
    return {
        "step_scheduler_with_optimizer": False,
        "mixed_precision": precision,
        "kwargs_handlers": [DistributedDataParallelKwargs(find_unused_parameters=True)],
        "cpu": active.device == "cpu",
    }


def governed_train(
    flags: list[str],
    pack: PolicyPack | str,
    signing_key: Path | None,
    *,
    runtime: str = TRAINING_RUNTIME,
    ray_address: str | None = None,
    trackers: Sequence[str] = (),
) -> Path:
    """Run LeRobot training with ``flags`` under ``pack``; return the run (output) folder.

    Data, checkpoint and release audits run beside the training loop: by default in local worker
    processes (trustai.runtime.process_executor), with ``runtime="ray"`` as Ray tasks (raises
    TrustaiUserError before training when the Ray cluster at ``ray_address`` cannot be reached), with
    ``runtime="inline"`` in the training process itself, in the loop's time. ``trackers`` (``wandb``,
    ``mlflow``) receive every finding, gate and card digest (trustai.training_hooks.trackers)."""
    from trustai.training_hooks.trackers import tracking

    cfg = parse_train_config(flags)
    if cfg.dataset is not None and cfg.dataset.root is not None:
        check_dataset(Path(cfg.dataset.root))  # a clear message now, not a failure deep inside LeRobot
    run_dir = Path(cfg.output_dir)
    governance = Governance(
        run_dir, pack, signing_key=signing_key, seed=cfg.seed or 0, runtime=runtime, ray_address=ray_address
    )
    try:
        with tracking(governance, trackers, wandb_enabled=bool(cfg.wandb.enable and cfg.wandb.project)):
            train_governed(cfg, governance)
    except Exception as exc:
        failed = _failed_download(exc)
        if failed is None:
            raise
        raise _offline_error(cfg, failed) from None
    finally:
        governance.close()
    return run_dir


def train_governed(cfg: Any, governance: Governance) -> None:
    """Run LeRobot's own ``train(cfg)`` with its accelerator governed by ``governance``, on every LeRobot
    this package supports: 0.6.0/0.6.1, where ``train`` takes ``accelerator=``, and later releases, where
    ``train`` builds it with ``make_accelerator(cfg)`` (LeRobot main); that factory's accelerator, with
    the FSDP, parallelism and gradient-accumulation settings it applies, is the one governed.

    The pre/post-processors ``train`` makes (``make_pre_post_processors``) are handed to the policy
    type's driver (``offline_pipeline``), which points steps LeRobot builds with a hub name at the
    local backbone the policy config names (GR00T's VLM-encode step), so training from a config runs
    offline and the saved pipeline keeps the local folder.

    The run's executor starts on the main process before the first step (a bad Ray address fails now,
    and Ray's start-up is not paid at the first checkpoint). Raises TrustaiUserError when the installed
    LeRobot offers neither hook point."""
    from lerobot.scripts import lerobot_train
    from trustai.training_hooks.lerobot import GovernedAccelerator

    config = json.loads(json.dumps(cfg.to_dict(), default=str))

    def govern(accelerator: Any) -> GovernedAccelerator:
        governed = GovernedAccelerator.adopt(accelerator, governance=governance, train_config=config)
        if governed.is_main_process:
            governance.executor.start()
        return governed

    factory = getattr(lerobot_train, "make_accelerator", None)
    if factory is None and "accelerator" not in inspect.signature(lerobot_train.train).parameters:
        raise TrustaiUserError(
            "this LeRobot's train() neither takes accelerator= nor builds it with make_accelerator()",
            where=f"lerobot {_lerobot_version()} ({lerobot_train.__file__})",
            fix="install a LeRobot release trustai supports (pyproject.toml: lerobot>=0.6,<0.7)",
        )
    with _replaced(lerobot_train, "make_pre_post_processors", lambda make: _offline_processors(cfg, make)):
        if factory is not None:
            with _replaced(lerobot_train, "make_accelerator", lambda make: lambda cfg_: govern(make(cfg_))):
                lerobot_train.train(cfg)
        else:
            from accelerate import Accelerator

            lerobot_train.train(cfg, accelerator=govern(Accelerator(**accelerator_kwargs(cfg))))


@contextmanager
def _replaced(module: Any, name: str, wrap: Callable[[Any], Any]) -> Iterator[None]:
    """``module.name`` replaced by ``wrap(module.name)`` inside the block, given back after it."""
    original = getattr(module, name)
    setattr(module, name, wrap(original))
    try:
        yield
    finally:
        setattr(module, name, original)


def _offline_processors(cfg: Any, make: Callable[..., Any]) -> Callable[..., Any]:
    """LeRobot's ``make_pre_post_processors`` with its preprocessor handed to the driver of the trained
    policy type (``offline_pipeline``); types trustai does not govern get LeRobot's pipelines as made."""
    from trustai.lerobot.policies import GOVERNED, driver_for

    policy_type = getattr(cfg.policy, "type", None)
    if policy_type not in GOVERNED:
        return make
    offline_pipeline = driver_for(policy_type, where="--policy.type").offline_pipeline

    def made(*args: Any, **kwargs: Any) -> Any:
        preprocessor, postprocessor = make(*args, **kwargs)
        offline_pipeline(cfg.policy, preprocessor)
        return preprocessor, postprocessor

    return made


def _lerobot_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lerobot")
    except PackageNotFoundError:
        return "(version unknown)"


_DOWNLOAD_ERRORS = (URLError, OfflineModeIsEnabled, LocalEntryNotFoundError)


def _failed_download(exc: BaseException) -> BaseException | None:
    """The download failure (no network, or Hugging Face offline mode) behind ``exc``, if any:
    LeRobot and transformers re-raise them wrapped, so the whole cause chain is searched."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _DOWNLOAD_ERRORS):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _offline_error(cfg: Any, failed: BaseException) -> TrustaiUserError:
    """One message for a download LeRobot's trainer could not make: what, where, how to train offline."""
    from huggingface_hub import constants
    from torch.hub import get_dir

    reason = str(getattr(failed, "reason", None) or failed).splitlines()[0]
    backbone = getattr(cfg.policy, "pretrained_backbone_weights", None)
    if isinstance(failed, URLError) and backbone is not None:
        return TrustaiUserError(
            f"could not download the pretrained backbone weights {backbone} ({reason})",
            where=f"--policy.pretrained_backbone_weights (torch hub cache: {get_dir()}/checkpoints)",
            fix="pass --policy.pretrained_backbone_weights=null to train the backbone from random weights, "
            "or run once with network access to put the weights in the torch hub cache",
        )
    return TrustaiUserError(
        f"a download failed, offline or without network ({type(failed).__name__}: {reason})",
        where=f"caches: Hugging Face {constants.HF_HUB_CACHE} (HF_HUB_OFFLINE={constants.HF_HUB_OFFLINE}), "
        f"torch hub {get_dir()}",
        fix="point --dataset.root / --policy.path at local copies, or run once with network access "
        "(HF_HUB_OFFLINE unset) to fill the caches",
    )
