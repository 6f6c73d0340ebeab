"""Hostile input: pickle payloads, paths and links that leave the card folder, parser bombs, datasets
that do not match their schema, foreign signatures and cards that cite what is not there. Each gets a
clear refusal (exit 2 for bad input, exit 1 naming what failed for a failed verification); nothing is
executed and nothing is lost."""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from trustai.reports.system import load_system
from trustai.training_hooks.lerobot_train import governed_train

from tests.reliability.conftest import GovernedRun
from tests.reliability.figures import FIGURES
from tests.reliability.hostile import (
    alias_bomb,
    alias_flood,
    cameras_pack,
    nested_json,
    nested_yaml,
    plant_pickles,
    sparse_file,
    trustai_capped,
)
from tests.reliability.runs import CORE_PACK, core_pack, private_checkpoint, train_flags, trustai
from tests.reliability.scale import SCALE
from trustai.attest.keys import generate_keypair
from trustai.attest.signing import MAX_FILE_BYTES, sign_folder, verify_folder
from trustai.core.canonical import digest
from trustai.errors import TrustaiUserError
from trustai.lerobot import datasets
from trustai.lerobot.adapter import PolicyAdapter
from trustai.packs import parse_pack

CARD = "trustai/card.json"


def tally(refused: bool, *, lost: bool = False, crashed: bool = False) -> None:
    """Count one hostile input into the figures; a loss or crash is noted with the test that saw it."""
    fig = FIGURES.row("hostile")
    fig.trials += 1
    fig.detected += refused and not lost and not crashed
    fig.lost += lost
    fig.crashed += crashed
    if lost or crashed:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].removesuffix(" (call)")
        fig.notes.append(f"{'crashed' if crashed else 'lost'}: {test}")


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 (or link target) of everything under ``folder``, links not followed."""
    return {
        p.relative_to(folder).as_posix(): (
            f"-> {p.readlink()}" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(folder.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


def crashed_in(output: str) -> bool:
    """True when ``output`` holds a Python traceback. Importing LeRobot on a machine without FFmpeg logs
    torchcodec's load failures as traceback-shaped warnings first; only what follows them counts."""
    return (
        "Traceback (most recent call last)"
        in output.rsplit("[end of libtorchcodec loading traceback]", 1)[-1]
    )


def refuse(result: subprocess.CompletedProcess, code: int, says: str, *, lost: bool = False) -> None:
    """Tally a command-line refusal and assert it: exit ``code``, ``says`` in the output, no traceback."""
    out = result.stdout + result.stderr
    crashed = crashed_in(out)
    refused = result.returncode == code and says in out
    tally(refused, lost=lost, crashed=crashed)
    assert refused and not crashed and not lost, (result.returncode, out[-4000:])


@pytest.fixture
def victim(governed: GovernedRun, tmp_path: Path) -> Path:
    """The release checkpoint of a private copy of the governed run; everything but the weights is a
    private file (safe to edit and re-sign)."""
    return private_checkpoint(governed.run_dir, tmp_path / "run")


def edit_card(folder: Path, key: Path, change: Callable[[dict], None]) -> None:
    """Change card.json and sign the folder again, as a compromised pipeline with the key could."""
    card = json.loads((folder / CARD).read_text())
    change(card)
    (folder / CARD).write_text(json.dumps(card))
    sign_folder(folder, key)


def verify(folder: Path, public_key: Path) -> subprocess.CompletedProcess:
    """`trustai verify` on ``folder``; a hang fails the test after two minutes."""
    return trustai("verify", folder, "--public-key", public_key, timeout=120)


def test_pickle_payloads_never_run(
    governed: GovernedRun, victim: Path, dataset: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran.marker"
    names = plant_pickles(victim, marker)
    refuse(verify(victim, governed.public_key), 1, f"{names[0]}: added after signing")
    PolicyAdapter.from_checkpoint(victim)  # reads model.safetensors; the pickles beside it are never opened
    tally(True, lost=marker.exists())
    (victim / "model.safetensors").unlink()  # now the pickle is the only weights file
    with pytest.raises(TrustaiUserError, match=r"pickle format \(evil.pt, pytorch_model.bin\)") as refused:
        PolicyAdapter.from_checkpoint(victim)
    tally(refused.value.where == str(victim), lost=marker.exists())
    if SCALE.name == "full":  # a fresh process importing LeRobot: only in `make reliability`
        pack = tmp_path / "pack.yaml"
        pack.write_text(CORE_PACK)
        args = ("audit", victim.parent, "--dataset", dataset, "--pack", pack, "--key", governed.private_key)
        refuse(trustai(*args), 2, "pickle", lost=marker.exists())
    assert not marker.exists(), "a pickle payload ran"


@pytest.mark.parametrize(
    "path", ["../../../../../../etc/passwd", "/etc/passwd", "evidence/../../model.safetensors"]
)
def test_evidence_paths_outside_the_card_folder_are_refused(
    governed: GovernedRun, victim: Path, path: str
) -> None:
    edit_card(victim, governed.private_key, lambda card: card["evidence"][0].update(file=path))
    refuse(verify(victim, governed.public_key), 1, "is outside trustai/ (refused, not read)")


def test_artifact_paths_outside_the_card_folder_are_refused(governed: GovernedRun, victim: Path) -> None:
    artifact = {"path": "../../../../../../etc/hostname", "sha256": "0" * 64, "media_type": "text/plain"}
    edit_card(victim, governed.private_key, lambda card: card["evidence"][0]["artifacts"].append(artifact))
    refuse(verify(victim, governed.public_key), 1, "artifact '../../../../../../etc/hostname' is outside")


def _link_evidence(folder: Path) -> str:
    evidence = next((folder / "trustai" / "evidence").glob("*.json"))
    copy = folder.parents[2] / "trustai" / "evidence" / evidence.name  # the run's own, identical copy
    evidence.unlink()
    evidence.symlink_to(copy)
    return evidence.relative_to(folder).as_posix()


def _link_zero(folder: Path) -> str:
    (folder / "zero.safetensors").symlink_to("/dev/zero")
    return "zero.safetensors"


def _link_card(folder: Path) -> str:
    (folder / CARD).unlink()
    (folder / CARD).symlink_to("/dev/zero")
    return CARD


def _link_card_folder(folder: Path) -> str:
    shutil.copytree(folder / "trustai", folder.parent / "elsewhere")
    shutil.rmtree(folder / "trustai")
    (folder / "trustai").symlink_to(folder.parent / "elsewhere")
    return "trustai"


@pytest.mark.parametrize("plant", [_link_evidence, _link_zero, _link_card, _link_card_folder])
def test_symbolic_links_in_a_signed_folder_are_named(
    governed: GovernedRun, victim: Path, plant: Callable[[Path], str]
) -> None:
    name = plant(victim)
    refuse(verify(victim, governed.public_key), 1, f"{name}: is a symbolic link")


def test_a_card_naming_a_foreign_file_as_its_ledger_is_refused_and_left_untouched(
    governed: GovernedRun, victim: Path, tmp_path: Path
) -> None:
    foreign = tmp_path / "somebody-else" / "ledger.sqlite"
    foreign.parent.mkdir()
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('precious')")
    db.commit()
    db.close()
    before = snapshot(foreign.parent)
    edit_card(victim, governed.private_key, lambda card: card["ledger"].update(path=str(foreign)))
    result = verify(victim, governed.public_key)
    refuse(result, 1, "no such table: records", lost=snapshot(foreign.parent) != before)
    edit_card(victim, governed.private_key, lambda card: card["ledger"].update(path="/etc/passwd"))
    refuse(
        verify(victim, governed.public_key), 1, "'/etc/passwd' as its ledger, not a ledger.sqlite (refused)"
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("name: big\nchecks: []\ndescription: '" + "x" * (2 << 20) + "'\n", "larger than"),
        (nested_yaml(5000), "nested"),
        (alias_bomb(), "hostile.yaml:3: YAML anchors and aliases are not allowed"),
        (alias_flood(), "hostile.yaml:7: YAML anchors and aliases are not allowed"),
    ],
    ids=["2MiB", "nested-5000", "alias-bomb", "alias-flood"],
)
def test_oversized_and_nested_policy_packs_are_refused(tmp_path: Path, text: str, says: str) -> None:
    pack = tmp_path / "hostile.yaml"
    pack.write_text(text)
    refuse(trustai_capped("policy", "validate", pack, timeout=60), 2, says)


def test_yaml_anchors_are_refused_in_packs_and_system_descriptions_alike(tmp_path: Path) -> None:
    written_out = parse_pack(cameras_pack(['"observation.images.top"'] * 3), "written-out.yaml")
    assert written_out.checks[0].params["cameras"] == ["observation.images.top"] * 3
    system = tmp_path / "system.yaml"
    system.write_text("name: &n Picker\nintended_purpose: *n\n")
    with pytest.raises(TrustaiUserError, match="YAML anchors and aliases are not allowed") as refused:
        load_system(system)
    tally(refused.value.where == f"{system}:1")
    system.write_text("name: Picker\nintended_purpose: Picker\n")
    assert load_system(system)[0].intended_purpose == "Picker"


UNSAFE = 2**53  # the first whole number canonical JSON (RFC 8785) cannot hold
ONE_CHECK = "name: big\nchecks:\n  - id: c\n    audit: robustness.adversarial\n    stage: checkpoint\n"


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (f"name: big\nversion: {UNSAFE}\nchecks: []\n", "big.yaml:2", f"version: {UNSAFE} is outside"),
        (f"name: big\nversion: {-UNSAFE}\nchecks: []\n", "big.yaml:2", f"version: {-UNSAFE} is outside"),
        (f"name: big\nversion: {float(UNSAFE)}\nchecks: []\n", "big.yaml:2", f"version: {UNSAFE} is"),
        (ONE_CHECK + f"    params: {{steps: {UNSAFE}}}\n", "big.yaml:6", "checks[0].params.steps: "),
        (
            ONE_CHECK + f"    thresholds:\n      max_action_deviation: {{max: {UNSAFE + 1}}}\n",
            "big.yaml:7",
            "checks[0].thresholds.max_action_deviation.max: ",
        ),
        ('name: big\nchecks: []\ndescription: "\\ud800"\n', "big.yaml:3", "description: text holds a lone"),
    ],
    ids=["version", "negative", "float-version", "param", "threshold", "surrogate"],
)
def test_packs_canonical_json_cannot_hold_are_refused_at_their_line(text: str, where: str, what: str) -> None:
    with pytest.raises(TrustaiUserError) as refused:
        parse_pack(text, "big.yaml")
    tally(refused.value.where == where and refused.value.what.startswith(what))
    assert (refused.value.where, refused.value.what[: len(what)]) == (where, what)


def test_a_pack_at_the_edge_of_canonical_json_validates_and_digests(tmp_path: Path) -> None:
    edge = parse_pack(f"name: edge\nversion: {UNSAFE - 1}\nchecks: []\n", "edge.yaml")
    assert len(digest(edge.model_dump(mode="json"))) == 64
    pack = tmp_path / "big.yaml"
    pack.write_text(f"name: big\nversion: {UNSAFE}\nchecks: []\n")
    refuse(trustai_capped("pack", "validate", pack), 2, f"{pack}:2: version: {UNSAFE} is outside")


def _nest_card(folder: Path) -> tuple[str, str]:
    (folder / CARD).write_text(nested_json(200_000))
    return CARD, "nested too deeply (refused)"


def _inflate_card(folder: Path) -> tuple[str, str]:
    with (folder / CARD).open("w") as f:
        f.write('{"padding": "')
        f.write("x" * (65 << 20))
        f.write('"}')
    return CARD, "larger than"


def _nest_evidence(folder: Path) -> tuple[str, str]:
    card = json.loads((folder / CARD).read_text())
    (folder / "trustai" / card["evidence"][0]["file"]).write_text(nested_json(200_000))
    return f"trustai/{card['evidence'][0]['file']}", "nested too deeply (refused)"


def _nest_signature(folder: Path) -> tuple[str, str]:
    (folder / "model.sig").write_text(nested_json(200_000))
    return "model.sig", "not a valid signature"


@pytest.mark.parametrize("plant", [_nest_card, _inflate_card, _nest_evidence, _nest_signature])
def test_oversized_and_nested_card_files_are_refused(
    governed: GovernedRun, victim: Path, plant: Callable[[Path], tuple[str, str]]
) -> None:
    name, says = plant(victim)
    refuse(verify(victim, governed.public_key), 1, f"{name}: {says}")


def _drop_info(root: Path) -> str:
    (root / "meta" / "info.json").unlink()
    return "meta/info.json is missing"


def _garble_info(root: Path) -> str:
    (root / "meta" / "info.json").write_text("{not json")
    return "not valid JSON"


def _old_version(root: Path) -> str:
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps(info | {"codebase_version": "v2.1"}))
    return "trustai reads v3.x only"


def _drop_column(root: Path) -> str:
    for path in (root / "data").rglob("*.parquet"):
        pq.write_table(pq.read_table(path).drop(["action"]), path)
    return "lacks the column 'action'"


def _wrong_shape(root: Path) -> str:
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["observation.state"]["shape"] = [3]
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return "declares shape [3]"


def _nest_info(root: Path) -> str:
    (root / "meta" / "info.json").write_text(nested_json(200_000))
    return "info.json"


def _garble_episode_count(root: Path) -> str:
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps(info | {"total_episodes": "many"}))
    return "total_episodes"


@pytest.mark.parametrize(
    "damage",
    [
        _drop_info,
        _garble_info,
        _old_version,
        _drop_column,
        _wrong_shape,
        _nest_info,
        _garble_episode_count,
    ],
)
def test_datasets_that_do_not_match_their_schema_are_refused_before_training(
    governed: GovernedRun, dataset: Path, tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    root = shutil.copytree(dataset, tmp_path / "dataset")
    says = damage(root)
    before = snapshot(root)
    flags = train_flags(root, tmp_path / "run", steps=2, save_freq=2)
    try:
        governed_train(flags, core_pack(), governed.private_key)
        error: Exception | None = None
    except Exception as exc:
        error = exc
    crashed = error is not None and not isinstance(error, TrustaiUserError)
    tally(says in str(error), lost=snapshot(root) != before, crashed=crashed)
    if crashed:
        raise error
    assert says in str(error) and not (tmp_path / "run" / "trustai").exists(), error
    if SCALE.name == "full" and damage is _drop_column:  # the command line, a fresh LeRobot import
        refuse(trustai("train", "--key", governed.private_key, "--", *flags), 2, says)


def _declare(root: Path, change: Callable[[dict], object]) -> None:
    info = json.loads((root / "meta" / "info.json").read_text())
    change(info)
    (root / "meta" / "info.json").write_text(json.dumps(info))


def test_a_huge_feature_shape_is_refused_before_drift_allocates(dataset: Path, tmp_path: Path) -> None:
    root = shutil.copytree(dataset, tmp_path / "dataset")
    assert datasets.open_dataset_meta(root).features == datasets.open_dataset_meta(dataset).features
    _declare(root, lambda info: info["features"]["observation.state"].update(shape=[100_000, 100_000]))
    result = trustai_capped("drift", "--reference", dataset, "--current", root)
    refuse(result, 2, "feature 'observation.state' has shape [100000, 100000]")
    assert f"limit of {datasets.MAX_VECTOR_VALUES}" in result.stdout + result.stderr


def _many_features(info: dict) -> None:
    info["features"].update({f"extra.{i}": {"dtype": "float32", "shape": [1]} for i in range(5000)})


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda info: info.update(total_episodes=datasets.MAX_EPISODES + 1), "total_episodes is"),
        (lambda info: info.update(total_frames=datasets.MAX_FRAMES + 1), "total_frames is"),
        (lambda info: info["features"]["action"].update(shape=[1e5, 1e5]), "'action' has shape [100000.0"),
        (lambda info: info["features"]["action"].update(shape=[1] * 9), "at most 8 whole numbers"),
        (
            lambda info: info["features"]["observation.images.top"].update(shape=[1 << 14, 1 << 14, 3]),
            f"limit of {datasets.MAX_CAMERA_VALUES} for a camera feature",
        ),
        (_many_features, f"over trustai's limit of {datasets.MAX_FEATURES}"),
    ],
    ids=["episodes", "frames", "float-shape", "rank", "camera", "features"],
)
def test_dataset_declarations_over_the_limits_are_refused(
    dataset: Path, tmp_path: Path, change: Callable[[dict], object], says: str
) -> None:
    root = shutil.copytree(dataset, tmp_path / "dataset")
    _declare(root, change)
    with pytest.raises(TrustaiUserError) as refused:
        datasets.open_dataset_meta(root)
    tally(says in refused.value.what and refused.value.where == str(root / "meta" / "info.json"))
    assert says in refused.value.what, refused.value


def test_more_recorded_episodes_than_the_limit_are_refused_unread(dataset: Path, tmp_path: Path) -> None:
    root = shutil.copytree(dataset, tmp_path / "dataset")
    assert datasets.episode_lengths(root) == datasets.episode_lengths(dataset)
    rows = datasets.MAX_EPISODES + 1
    table = pa.table({"episode_index": pa.array(range(rows)), "length": pa.repeat(1, rows)})
    pq.write_table(table, root / "meta" / "episodes" / "chunk-000" / "file-999.parquet")
    with pytest.raises(TrustaiUserError, match=f"over trustai's limit of {datasets.MAX_EPISODES}") as refused:
        datasets.episode_lengths(root)
    tally(refused.value.where == str(root / "meta" / "episodes"))


def test_unsigned_and_oversized_files_are_named_without_being_hashed(
    governed: GovernedRun, victim: Path
) -> None:
    assert verify_folder(victim, governed.public_key).ok
    sparse_file(victim / "planted.safetensors", 1 << 40)  # hashing 1 TiB would take hours
    (victim / "config.json").unlink()
    sparse_file(victim / "config.json", MAX_FILE_BYTES + 1)
    result = verify(victim, governed.public_key)
    refuse(result, 1, "planted.safetensors: added after signing (not covered by the signature; not hashed)")
    assert f"config.json: {MAX_FILE_BYTES + 1} bytes, over the" in result.stdout + result.stderr


def test_files_over_the_size_limit_are_refused_for_signing(keys: tuple[Path, Path], tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    sign_folder(folder, keys[0])
    sparse_file(folder / "model.safetensors", MAX_FILE_BYTES + 1)
    with pytest.raises(
        TrustaiUserError, match=r"refusing to sign files over \d+ bytes .*: model\.safetensors"
    ) as refused:
        sign_folder(folder, keys[0])
    tally(refused.value.where == str(folder.resolve()))


def test_a_signature_by_another_key_is_named(governed: GovernedRun, victim: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    generate_keypair(other, tmp_path / "other.pub")
    refuse(verify(victim, tmp_path / "other.pub"), 1, "model.sig: signed by a different key")
    sign_folder(victim, other)  # someone else re-signs the checkpoint
    refuse(verify(victim, governed.public_key), 1, "model.sig: signed by a different key")


def test_a_card_citing_a_missing_record_is_named(governed: GovernedRun, victim: Path) -> None:
    edit_card(victim, governed.private_key, lambda card: card["evidence"][0]["record"].update(seq=99999))
    refuse(verify(victim, governed.public_key), 1, "card cites ledger record 99999, which is missing")


def test_markup_in_a_file_name_is_printed_not_interpreted(governed: GovernedRun, victim: Path) -> None:
    (victim / "[").mkdir()
    (victim / "[" / "]evil.json").write_text("{}")
    refuse(verify(victim, governed.public_key), 1, "[/]evil.json: added after signing")
