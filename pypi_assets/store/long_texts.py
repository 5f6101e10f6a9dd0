"""Long descriptions, stored once and out of line.

DuckDB holds several copies of each string a transaction is handed (the vector, the segment,
the undo and the WAL serialisation at commit): a 5 MB description written inline, in two
files and two infos, cost 14 times its size in RSS. So a description of at least
:data:`LONG_TEXT` characters is written to ``long_texts`` first, in pieces of
:data:`PIECE` characters, each piece its own small transaction, and only once whichever files
and infos carry it. The project's own transaction then stores its digest: NULL in
``distribution_rows.description``, ``null`` in the info JSON's ``description``. The view
``distributions`` and the readers (:func:`.schema.long_text_sql`, :func:`.schema.info_sql`)
put the text back.

A crash between the pieces and the project's transaction leaves pieces no row names: the
next write of the same text finds them complete and keeps them; :func:`drop_unreferenced`
deletes the rest (each time a writer opens the database).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

import duckdb

from ..pypi.records import StoredText

__all__ = [
    "LONG_TEXT",
    "PIECE",
    "WHOLE",
    "LongTexts",
    "TornText",
    "drop_unreferenced",
    "named_by",
    "read_texts",
    "text_digest",
    "whole_info",
    "whole_info_json",
    "whole_sql",
]

#: A description of this many characters or more is stored out of line.
LONG_TEXT = 256 * 1024
#: The characters per stored piece (and per transaction writing one).
PIECE = 64 * 1024

#: Every column that names a long text, as ``(table, column, the table's project column)``.
REFERENCES = (
    ("distribution_rows", "description_digest", "project"),
    ("projects", "info_description", "name"),
    ("releases", "info_description", "project"),
)


#: Over one digest's pieces (``GROUP BY digest``): the text is stored whole, each piece
#: once, numbered 0 to n - 1, and every piece agreeing on n. The one test of a stored text,
#: in the working database (:meth:`LongTexts.store`, :func:`read_texts`, the check
#: ``long_texts_whole``) and in the lake (publication); the digest checks the content.
WHOLE = (
    "(count(*) = max(pieces) AND count(DISTINCT part) = max(pieces) "
    "AND min(pieces) = max(pieces) AND min(part) = 0 AND max(part) = max(pieces) - 1)"
)


def whole_sql(table: str = "long_texts") -> str:
    """The digests ``table`` holds whole (:data:`WHOLE`), among those of ``$1``
    (a ``VARCHAR[]``)."""
    return (
        f"SELECT digest FROM {table} WHERE digest IN (SELECT unnest($1::VARCHAR[])) "
        f"GROUP BY digest HAVING {WHOLE}"
    )


class TornText(OSError):
    """A long text the rows name is not stored whole (a piece lost or altered): the
    database is damaged; it is never read as a shorter or different text."""


def text_digest(text: str) -> str:
    """sha256 of ``text`` as UTF-8, hex, encoded a piece at a time (no whole copy)."""
    h = hashlib.sha256()
    for i in range(0, len(text), PIECE):
        h.update(text[i : i + PIECE].encode("utf-8", "surrogatepass"))
    return h.hexdigest()


class LongTexts:
    """The long texts of one write: each distinct text digested once (texts are compared
    by identity first, as the fetch shares one string per distinct description)."""

    def __init__(self, threshold: int = LONG_TEXT) -> None:
        self.threshold = threshold
        self.texts: dict[str, str] = {}
        #: texts already stored, named again (:class:`StoredText`): none to write
        self.stored: set[str] = set()
        self._by_id: dict[int, str] = {}

    def digest(self, text: object) -> str | None:
        """The digest under which ``text`` is stored out of line, or ``None`` when it is
        stored inline (short, or not a string). A :class:`StoredText` names its own."""
        if isinstance(text, StoredText):
            self.stored.add(text.digest)
            return text.digest
        if not isinstance(text, str) or len(text) < self.threshold:
            return None
        known = self._by_id.get(id(text))
        if known is not None and self.texts.get(known) is text:
            return known
        digest = text_digest(text)
        self.texts.setdefault(digest, text)
        self._by_id[id(text)] = digest
        return digest

    def info_json(self, info: dict[str, Any] | None) -> tuple[str | None, str | None]:
        """``(info JSON, digest)``: the JSON of ``info``, its description ``null`` when it
        is stored out of line under the digest."""
        if info is None:
            return None, None
        digest = self.digest(info.get("description"))
        if digest is not None:
            info = {**info, "description": None}
        return json.dumps(info, sort_keys=True), digest

    def store(self, con: duckdb.DuckDBPyConnection) -> None:
        """Write each text not stored complete yet, one piece per transaction (``con`` is
        in autocommit mode). The texts named again by digest must be stored whole: else
        :class:`TornText` (before any row names them)."""
        if self.stored:
            whole = {r[0] for r in con.execute(whole_sql(), [sorted(self.stored)]).fetchall()}
            if self.stored - whole:
                raise TornText(f"long texts not stored whole: {sorted(self.stored - whole)[:5]}")
        for digest, text in self.texts.items():
            pieces = -(-len(text) // PIECE)
            row = con.execute(
                f"SELECT {WHOLE} AND sum(length(text)) = ? FROM long_texts WHERE digest = ?",
                [len(text), digest],
            ).fetchone()
            if row is not None and row[0]:
                continue
            con.execute("DELETE FROM long_texts WHERE digest = ?", [digest])
            for part, piece in enumerate(_pieces(text)):
                con.execute(
                    "INSERT INTO long_texts (digest, part, text, pieces) VALUES (?, ?, ?, ?)",
                    [digest, part, piece, pieces],
                )


_READ_PIECES = 16


def read_texts(con: duckdb.DuckDBPyConnection, digests: Iterable[str | None]) -> dict[str, str]:
    """The long texts ``digests`` name, each joined in Python from its pieces (DuckDB's
    ``string_agg`` and ``json_merge_patch`` hold many copies of a big text: 17 times a
    20 MB body, where this holds about two). A text with a piece missing, or whose pieces
    do not hash to its digest, is an error (:class:`TornText`), never a different text."""
    out: dict[str, str] = {}
    for digest in sorted({d for d in digests if d is not None}):
        row = con.execute(
            f"SELECT count(*), coalesce(max(pieces), 0), coalesce({WHOLE}, false) "
            "FROM long_texts WHERE digest = ?",
            [digest],
        ).fetchone()
        count, expected, whole = (int(row[0]), int(row[1]), bool(row[2])) if row else (0, 0, False)
        if not whole:
            raise TornText(f"long text {digest}: {count} of {expected} pieces stored")
        pieces: list[str] = []
        # 1 MB per query: no result holds the text beside the pieces, and a text costs a
        # few queries (each scans the table), not one per piece
        for first in range(0, count, _READ_PIECES):
            rows = con.execute(
                "SELECT text FROM long_texts WHERE digest = ? AND part BETWEEN ? AND ? "
                "ORDER BY part",
                [digest, first, first + _READ_PIECES - 1],
            ).fetchall()
            pieces.extend(r[0] for r in rows)
            del rows
        out[digest] = "".join(pieces)
        del pieces
        if text_digest(out[digest]) != digest:
            raise TornText(f"long text {digest}: its pieces do not make the text")
    return out


def whole_info(
    info: str | None, digest: str | None, texts: dict[str, str]
) -> dict[str, Any] | None:
    """A stored info JSON, parsed, with its long description (``digest``) put back."""
    if not info:
        return None
    parsed: dict[str, Any] = json.loads(info)
    if digest is not None:
        parsed["description"] = texts.get(digest)
    return parsed


def whole_info_json(info: str | None, digest: str | None, texts: dict[str, str]) -> str | None:
    """:func:`whole_info` as JSON text (as it was stored: keys sorted)."""
    if digest is None:
        return info
    return json.dumps(whole_info(info, digest, texts), sort_keys=True)


def _pieces(text: str) -> Iterator[str]:
    for i in range(0, len(text), PIECE):
        yield text[i : i + PIECE]


def named_by(con: duckdb.DuckDBPyConnection, projects: list[str]) -> list[str]:
    """The long texts the stored rows of ``projects`` name."""
    named = " UNION ".join(
        f"SELECT {col} FROM {table} WHERE {col} IS NOT NULL AND {key} IN (SELECT unnest($1))"
        for table, col, key in REFERENCES
    )
    return [r[0] for r in con.execute(named, [projects]).fetchall()]


def mend_pieces(con: duckdb.DuckDBPyConnection) -> None:
    """Pieces stored before each knew how many its text has (the layout of one commit):
    their count, which the digest still checks when the text is read."""
    con.execute(
        "UPDATE long_texts t SET pieces = c.n FROM (SELECT digest, count(*) AS n "
        "FROM long_texts GROUP BY digest) c WHERE t.digest = c.digest AND t.pieces IS NULL"
    )


def drop_unreferenced(con: duckdb.DuckDBPyConnection, digests: Iterable[str] | None = None) -> int:
    """Delete the long texts no row names (among ``digests``; ``None``: all). Returns how
    many texts were deleted. The references are read by digest (no scan of the pieces)."""
    if digests is None:
        rows = con.execute("SELECT DISTINCT digest FROM long_texts").fetchall()
        digests = [r[0] for r in rows]
    wanted = sorted(set(digests))
    if not wanted:
        return 0
    named = " UNION ".join(
        f"SELECT {col} FROM {table} WHERE {col} IN (SELECT unnest($1::VARCHAR[]))"
        for table, col, _ in REFERENCES
    )
    held = {r[0] for r in con.execute(named, [wanted]).fetchall()}
    gone = [d for d in wanted if d not in held]
    if gone:
        con.execute("DELETE FROM long_texts WHERE digest IN (SELECT unnest($1::VARCHAR[]))", [gone])
    return len(gone)
