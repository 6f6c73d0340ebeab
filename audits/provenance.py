"""``provenance.manifest``: checks that the run manifest can reproduce the model (commit, clean tree,
seed, dataset fingerprint, package versions) and records the digest of the checkpoint's weights."""

from trustai.audit import Audit, AuditContext, Measurement, register
from trustai.evidence import Stage
from trustai.provenance import weights_digest


@register
class ProvenanceManifest(Audit):
    """Metrics: ``git_commit_recorded``, ``git_clean``, ``seed_recorded``, ``dataset_fingerprinted``,
    ``train_config_recorded``, ``packages_recorded``; table ``weights`` with the weights digest."""

    name = "provenance.manifest"
    version = "1"
    stages = frozenset({Stage.DATA, Stage.CHECKPOINT, Stage.RELEASE})

    def measure(self, ctx: AuditContext, params: object) -> Measurement:
        m = ctx.manifest or {}
        git = m.get("git") or {}
        metrics = {
            "git_commit_recorded": git.get("commit") is not None,
            "git_clean": git.get("dirty") is False,
            "seed_recorded": m.get("seed") is not None,
            "dataset_fingerprinted": bool((m.get("dataset") or {}).get("fingerprint")),
            "train_config_recorded": bool(m.get("train_config")),
            "packages_recorded": len((m.get("environment") or {}).get("packages", {})),
        }
        tables = {}
        if ctx.checkpoint_dir is not None:
            tables["weights"] = [
                {"checkpoint": str(ctx.checkpoint_dir), "sha256": weights_digest(ctx.checkpoint_dir)}
            ]
        return Measurement(metrics=metrics, tables=tables)
