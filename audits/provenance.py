"""Provenance audits.

- ``provenance.manifest``: checks that the run manifest can reproduce the model (commit, clean tree,
  seed, dataset fingerprint, package versions) and records the digest of the checkpoint's weights.
- ``provenance.dataset``: reads every byte of the training dataset and checks the digests the run
  claimed for it at start-up without reading them (``trustai.lerobot.dataset_digests``): a wrong claim
  is a mismatch, so a pack's ``digests_mismatched: {max: 0}`` makes it a ``fail`` finding.
"""

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.core.manifest import weights_digest
from trustai.lerobot.dataset_digests import VERIFYING_AUDIT, DatasetDigests, verify_digests


@register
class ProvenanceManifest(Audit):
    """Metrics: ``ProvenanceManifest.metrics``; table ``weights`` with the weights digest."""

    name = "provenance.manifest"
    version = "1"
    stages = frozenset({Stage.DATA, Stage.CHECKPOINT, Stage.RELEASE})
    metrics = declare(
        {
            "git_commit_recorded": Metric("bool", "higher_is_better", "the manifest names the git commit"),
            "git_clean": Metric("bool", "higher_is_better", "the working tree had no uncommitted changes"),
            "seed_recorded": Metric("bool", "higher_is_better", "the manifest records the random seed"),
            "dataset_fingerprinted": Metric(
                "bool",
                "higher_is_better",
                "the run fingerprints the dataset: in its manifest, or (digests still pending at start-up) "
                "by the data stage's full re-hash before this stage",
            ),
            "train_config_recorded": Metric(
                "bool", "higher_is_better", "the manifest holds the train config"
            ),
            "packages_recorded": Metric("count", "higher_is_better", "package versions the manifest records"),
        }
    )

    def measure(self, ctx: AuditContext, params: object) -> Measurement:
        m = ctx.manifest or {}
        git = m.get("git") or {}
        metrics = {
            "git_commit_recorded": git.get("commit") is not None,
            "git_clean": git.get("dirty") is False,
            "seed_recorded": m.get("seed") is not None,
            "dataset_fingerprinted": bool(
                (m.get("dataset") or {}).get("fingerprint") or ctx.inputs.dataset_fingerprint
            ),
            "train_config_recorded": bool(m.get("train_config")),
            "packages_recorded": len((m.get("environment") or {}).get("packages", {})),
        }
        tables = {}
        if ctx.checkpoint_dir is not None:
            tables["weights"] = [
                {"checkpoint": str(ctx.checkpoint_dir), "sha256": weights_digest(ctx.checkpoint_dir)}
            ]
        return Measurement(metrics=metrics, tables=tables)


class DatasetDigestsParams(BaseModel):
    """``threads``: files hashed at once (default: the cores, at most 8)."""

    model_config = ConfigDict(extra="forbid")
    threads: int | None = Field(default=None, ge=1)


@register
class ProvenanceDataset(Audit):
    """Metrics: ``ProvenanceDataset.metrics``; tables ``mismatches`` (each file whose claim was wrong),
    ``claims`` (digests confirmed, per claim source) and ``fingerprint`` (claimed and verified)."""

    name = VERIFYING_AUDIT
    version = "1"
    stages = frozenset({Stage.DATA})
    Params = DatasetDigestsParams
    metrics = declare(
        {
            "files": Metric("count", "neutral", "content files of the dataset, every one read in full"),
            "bytes_read": Metric("bytes", "neutral", "bytes read and hashed"),
            "digests_claimed": Metric(
                "count", "neutral", "files whose digest the run claimed at start-up without reading them"
            ),
            "digests_mismatched": Metric(
                "count",
                "lower_is_better",
                "files whose bytes differ from the run's claim: a wrong claimed digest, a file added, gone, "
                "or changed while it was read",
            ),
            "fingerprint_verified": Metric(
                "bool", "higher_is_better", "every file was read and matched its claim"
            ),
        }
    )

    def measure(self, ctx: AuditContext, params: DatasetDigestsParams) -> Measurement:
        if ctx.dataset is None:
            raise ValueError("provenance.dataset needs the training dataset (no dataset at this stage)")
        dataset = (ctx.manifest or {}).get("dataset") or {}
        recorded = dataset.get("digests")
        claimed = DatasetDigests.from_record(recorded) if isinstance(recorded, dict) else None
        check = verify_digests(ctx.dataset, claimed, threads=params.threads)
        mismatches = list(check.mismatches)
        claimed_fingerprint = claimed.fingerprint if claimed else dataset.get("fingerprint")
        if claimed is None and claimed_fingerprint and claimed_fingerprint != check.fingerprint:
            # a manifest without per-file claims: only its fingerprint can be compared
            fingerprints = {"claimed": claimed_fingerprint, "actual": check.fingerprint}
            mismatches.append({"path": None, "source": "fingerprint", **fingerprints})
        sources = Counter(f.source for f in claimed.files) if claimed else Counter()
        claims = [
            {"source": source, "claimed": n, "confirmed": check.verified.get(source, 0)}
            for source, n in sorted(sources.items())
        ]
        metrics = {
            "files": check.files,
            "bytes_read": check.bytes_read,
            "digests_claimed": sum(n for source, n in sources.items() if source not in ("hashed", "pending")),
            "digests_mismatched": len(mismatches),
            "fingerprint_verified": check.fingerprint is not None and not mismatches,
        }
        fingerprint = [{"claimed": claimed_fingerprint, "verified": check.fingerprint}]
        tables = {"mismatches": mismatches, "claims": claims, "fingerprint": fingerprint}
        return Measurement(metrics=metrics, tables=tables)
