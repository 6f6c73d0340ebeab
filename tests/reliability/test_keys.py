"""Signing keys: private keys are written 0600 whatever the umask, `trustai keys generate` never
overwrites or follows a planted link, and no file of a governed run (ledger, cards, evidence, training
state) or its log holds any fragment of the private key."""

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import GovernedRun
from tests.reliability.figures import FIGURES
from tests.reliability.keyscan import files_leaking, key_fragments
from tests.reliability.runs import trustai


def tally(held: bool) -> None:
    """Count one key property into the figures (a breach counts as lost)."""
    fig = FIGURES.row("keys")
    fig.trials += 1
    fig.detected += held
    fig.lost += not held


def test_private_keys_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    private = tmp_path / "keys" / "signing-key.pem"
    result = trustai("keys", "generate", "--private", private, umask=0)
    modes = (stat.S_IMODE(private.stat().st_mode), stat.S_IMODE(private.with_suffix(".pub").stat().st_mode))
    tally(result.returncode == 0 and modes == (0o600, 0o644))
    assert result.returncode == 0 and modes == (0o600, 0o644), (result.stderr, oct(modes[0]))
    assert not any(f.decode() in result.stdout + result.stderr for f in key_fragments(private)[:2])


def _existing_private(private: Path) -> None:
    private.write_text("precious")


def _existing_public(private: Path) -> None:
    private.with_suffix(".pub").write_text("precious")


def _planted_link(private: Path) -> None:
    private.symlink_to(private.parent / "link-target")


@pytest.mark.parametrize("plant", [_existing_private, _existing_public, _planted_link])
def test_keys_generate_never_overwrites(tmp_path: Path, plant: Callable[[Path], None]) -> None:
    private = tmp_path / "signing-key.pem"
    plant(private)
    before = {p.name: (p.is_symlink(), p.read_bytes() if p.is_file() else None) for p in tmp_path.iterdir()}
    result = trustai("keys", "generate", "--private", private)
    after = {p.name: (p.is_symlink(), p.read_bytes() if p.is_file() else None) for p in tmp_path.iterdir()}
    held = result.returncode == 2 and "refusing to overwrite" in result.stderr and after == before
    tally(held and "Traceback" not in result.stderr)
    assert held and "Traceback" not in result.stderr, (result.returncode, result.stderr, before, after)


def test_no_run_file_or_log_holds_the_private_key(governed: GovernedRun) -> None:
    files = [p for p in governed.run_dir.rglob("*") if p.is_file()]
    leaks = files_leaking(governed.private_key, [governed.run_dir, governed.log])
    tally(not leaks)
    FIGURES.row("keys").notes.append(
        f"{len(files)} files of a governed run (ledger, cards, evidence, training_state) and its log scanned"
    )
    assert len(files) > 20 and governed.log.stat().st_size > 0
    assert not leaks, leaks


def test_a_private_key_given_as_public_key_is_refused_without_echoing_it(
    governed: GovernedRun, tmp_path: Path
) -> None:
    result = trustai("verify", governed.checkpoints[-1], "--public-key", governed.private_key)
    output = (result.stdout + result.stderr).encode()
    echoed = any(f in output for f in key_fragments(governed.private_key))
    tally(result.returncode == 2 and not echoed)
    assert result.returncode == 2 and "not the private key" in result.stderr and not echoed, result.stderr
