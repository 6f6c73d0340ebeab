"""A card the Hub accepts as it is, and `trustai export`: the README passes huggingface_hub's own
model-card parsing with every trustai result in `model-index`; an exported folder verifies after a copy
(with the run gone) and fails once a byte changes; a checkpoint that does not verify is not exported."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, ModelCardData, metadata_load
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

from benchmarks.dashboard_load import write_run
from trustai.attest.keys import generate_keypair, public_key_fingerprint

BIN = Path(sys.executable).parent / "trustai"


def trustai(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A governed, signed run with checkpoints at steps 10 and 20 (released, blocked)."""
    tmp = tmp_path_factory.mktemp("export")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    for _ in write_run(tmp / "run", tmp / "k.pem", checkpoints=2, checks=3, fail_at=2):
        pass
    return tmp / "run", tmp / "k.pub"


def test_readme_passes_hugging_face_parsing_with_every_result_in_model_index(sealed) -> None:
    run_dir, _ = sealed
    model = run_dir / "checkpoints" / "000020" / "pretrained_model"
    card = json.loads((model / "trustai" / "card.json").read_text())
    text = (model / "README.md").read_text()
    hub = ModelCard(text, ignore_metadata_errors=False)  # raises on metadata the Hub would refuse
    assert hub.data.library_name == "lerobot" and hub.data.pipeline_tag == "robotics"
    results = {(r.metric_type, r.metric_name): r.metric_value for r in hub.data.eval_results}
    for m in card["quantitative_analysis"]["performance_metrics"]:
        assert (
            results[(f"{m['check_id']}/{m['metric']}", f"{m['check_id']} {m['metric']} ({m['stage']})")]
            == m["value"]
        )
    verdicts = {t: v for (t, _), v in results.items() if t.endswith("/verdict")}
    assert verdicts == {f"{f['check_id']}/verdict": f["status"] for f in card["governance"]["findings"]}
    assert (
        verdicts["manifest-0/verdict"] == "fail"
        and results[("trustai/gate", "trustai governance gate")] == "blocked"
    )
    metadata = metadata_load(model / "README.md")
    name, parsed = model_index_to_eval_results(metadata["model-index"])
    assert name == "run" and len(parsed) == len(results)
    assert eval_results_to_model_index(name, parsed) == metadata["model-index"]  # round trip, nothing lost
    assert ModelCardData(**metadata).to_dict()["model-index"] == metadata["model-index"]


def test_export_verifies_after_a_copy_and_fails_once_tampered(sealed, tmp_path: Path) -> None:
    run_dir, public = sealed
    out = tmp_path / "export"
    result = trustai("export", run_dir / "checkpoints" / "000020", out, "--public-key", public)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((out / "trustai" / "export.json").read_text())
    assert manifest["public_key_sha256"] == public_key_fingerprint(public) and manifest["gate"] == "blocked"
    assert (out / "README.md").read_text() == (
        run_dir / "checkpoints/000020/pretrained_model/README.md"
    ).read_text()

    copy = tmp_path / "elsewhere" / "uploaded"
    shutil.copytree(out, copy)
    shutil.rmtree(out)
    hidden = run_dir.with_name("run-moved")
    run_dir.rename(hidden)  # the copy stands on its own: no run folder, no original export
    try:
        verified = trustai("verify", copy / manifest["checkpoint"], "--public-key", public)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        weights = copy / manifest["checkpoint"] / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[100] ^= 0xFF
        weights.write_bytes(bytes(data))
        tampered = trustai("verify", copy / manifest["checkpoint"], "--public-key", public)
        assert tampered.returncode == 1 and "model.safetensors" in tampered.stdout
    finally:
        hidden.rename(run_dir)


def test_a_checkpoint_that_does_not_verify_is_not_exported(sealed, tmp_path: Path) -> None:
    run_dir, public = sealed
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    card = copy / "checkpoints" / "000020" / "pretrained_model" / "README.md"
    card.write_text(card.read_text().replace("Governance gate: **blocked**", "Governance gate: **pass**"))
    result = trustai("export", copy / "checkpoints" / "000020", tmp_path / "out", "--public-key", public)
    assert result.returncode == 1 and "README.md" in result.stdout and not (tmp_path / "out").exists()
