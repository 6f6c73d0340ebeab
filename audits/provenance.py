"""``provenance.manifest``: checks that the run manifest can reproduce the model (commit, clean tree,
seed, dataset fingerprint, package versions) and records the digest of the checkpoint's weights."""

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.core.manifest import weights_digest


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
                "bool", "higher_is_better", "the manifest fingerprints the dataset"
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
