"""Per-episode attributes (robot, site, operator, lighting, ...) of a LeRobot dataset, from columns of
its meta/episodes files or from a user's CSV/JSON file that maps episode_index to attributes."""

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from trustai.errors import TrustaiUserError

_FILE_FIX = (
    "use a CSV with an episode_index column and one column per attribute, or JSON: a list of such "
    "records, or an object {episode_index: {attribute: value}}"
)


def read_records(path: Path | str) -> list[dict[str, Any]]:
    """Rows of a CSV file (header line) or a JSON file holding a list of objects.

    Raises TrustaiUserError for a missing, unreadable or differently shaped file.
    """
    path = Path(path)
    if not path.is_file():
        raise TrustaiUserError("file not found", where=str(path), fix=_FILE_FIX)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".csv":
            return list(csv.DictReader(text.splitlines()))
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise TrustaiUserError(f"cannot read the file ({exc})", where=str(path), fix=_FILE_FIX) from exc
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        return [{"episode_index": key, **value} for key, value in data.items()]
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return data
    raise TrustaiUserError("unexpected JSON layout", where=str(path), fix=_FILE_FIX)


def _from_file(path: Path | str) -> dict[int, dict[str, Any]]:
    mapping: dict[int, dict[str, Any]] = {}
    for number, row in enumerate(read_records(path), start=1):
        try:
            episode = int(row["episode_index"])
        except (KeyError, TypeError, ValueError):
            raise TrustaiUserError(
                f"row {number} has no integer episode_index", where=str(path), fix=_FILE_FIX
            ) from None
        mapping[episode] = {k: v for k, v in row.items() if k != "episode_index"}
    return mapping


def _meta_columns(root: Path) -> list[str]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    return pq.ParquetFile(files[0]).schema_arrow.names if files else []


def _from_meta(root: Path, names: list[str]) -> dict[int, dict[str, Any]]:
    mapping: dict[int, dict[str, Any]] = {}
    for path in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        table = pq.read_table(path, columns=["episode_index", *names]).to_pydict()
        for row, episode in enumerate(table["episode_index"]):
            mapping[int(episode)] = {name: table[name][row] for name in names}
    return mapping


def episode_attributes(
    root: Path, names: list[str], episodes: Iterable[int], mapping_file: Path | str | None = None
) -> dict[int, dict[str, str]]:
    """Return {episode: {attribute: value as text}} for ``names`` over ``episodes``.

    An attribute comes from ``mapping_file`` when the file has it, else from the meta/episodes
    column of that name. Raises TrustaiUserError when an attribute is in neither, when the file names
    episodes the dataset lacks, or when an episode has no value for an attribute.
    """
    episodes = sorted(episodes)
    from_file = _from_file(mapping_file) if mapping_file is not None else {}
    file_names = {k for attributes in from_file.values() for k in attributes}
    meta_names = set(_meta_columns(root))
    missing = [n for n in names if n not in file_names and n not in meta_names]
    if missing:
        offered = sorted(file_names | {c for c in meta_names if "/" not in c})
        raise TrustaiUserError(
            f"episode attributes {missing} are neither meta/episodes columns nor in the mapping file",
            where=str(mapping_file or root / "meta" / "episodes"),
            fix=f"map them in a mapping file, or use some of: {', '.join(offered) or '(none)'}",
        )
    stray = sorted(set(from_file) - set(episodes))
    if stray:
        raise TrustaiUserError(
            f"the mapping file names episodes {stray[:10]} that are not among the audited episodes",
            where=str(mapping_file),
            fix="check that the file belongs to this dataset",
        )
    from_meta = _from_meta(root, [n for n in names if n not in file_names])
    values: dict[int, dict[str, str]] = {e: {} for e in episodes}
    for name in names:
        source = from_file if name in file_names else from_meta
        lacking = [e for e in episodes if source.get(e, {}).get(name) in (None, "")]
        if lacking:
            raise TrustaiUserError(
                f"episodes {lacking[:10]} have no value for attribute {name!r}",
                where=str(mapping_file if name in file_names else root / "meta" / "episodes"),
                fix="give every audited episode a value (e.g. 'unknown'), or audit fewer episodes",
            )
        for e in episodes:
            values[e][name] = str(source[e][name])
    return values
