"""The worker's snippet reads and writes, in batches: jobs started together read their
snippets with one query, and the results that are waiting are committed together by a
single writer (group commit), each still only onto its own pending revision."""

from __future__ import annotations

from collections.abc import Sequence

from snippet_service import bulk, db
from snippet_service.batching import Batcher


class SnippetStore:
    """Batched access to snippets for the jobs of one worker process."""

    def __init__(self, database: db.Database) -> None:
        self.database = database
        self._reads: Batcher[str, db.Snippet | None] = Batcher(
            self._read, name="snippet-reads"
        )
        self._writes: Batcher[tuple[str, int, str], bool] = Batcher(
            self._write, name="highlight-writes"
        )

    async def get(self, snippet_id: str) -> db.Snippet | None:
        """The unexpired snippet, or None (read with the others asked for in this tick)."""
        return await self._reads.submit(snippet_id)

    async def store_highlight(self, snippet_id: str, revision: int, html: str) -> bool:
        """Store the HTML of a pending revision once the batch it joins is committed;
        False if that revision was no longer pending."""
        return await self._writes.submit((snippet_id, revision, html))

    async def close(self) -> None:
        """Commit what is waiting."""
        await self._writes.close()

    async def _read(self, snippet_ids: Sequence[str]) -> list[db.Snippet | None]:
        found = await bulk.get_snippets(self.database, snippet_ids)
        return [found.get(snippet_id) for snippet_id in snippet_ids]

    async def _write(self, results: Sequence[tuple[str, int, str]]) -> list[bool]:
        written = await bulk.mark_many_highlighted(self.database, results)
        return [(snippet_id, revision) in written for snippet_id, revision, _ in results]
