"""What the pages, the API and the chat read: findings, actions, open breakers, chat history."""

from __future__ import annotations

import logging

from sqlalchemy import select

from jarvis.base import JarvisBase
from jarvis.findings import RANK
from jarvis.models import JarvisAction, JarvisBreaker, JarvisChat, JarvisFinding

log = logging.getLogger("jarvis.service")


class ReadModel(JarvisBase):
    def findings(self, include_resolved: bool = False, limit: int = 200) -> list[JarvisFinding]:
        q = select(JarvisFinding)
        if not include_resolved:
            q = q.where(JarvisFinding.status != "resolved")
        with self.store.session() as s:
            rows = list(s.scalars(q.order_by(JarvisFinding.last_seen.desc()).limit(limit)))
        rows.sort(key=lambda r: (r.status == "resolved", -RANK.get(r.severity, 0), r.target))
        return rows

    def actions(self, statuses: tuple[str, ...] | None = None, limit: int = 100) -> list[JarvisAction]:
        q = select(JarvisAction)
        if statuses:
            q = q.where(JarvisAction.status.in_(statuses))
        with self.store.session() as s:
            return list(s.scalars(q.order_by(JarvisAction.id.desc()).limit(limit)))

    def breakers(self) -> list[JarvisBreaker]:
        with self.store.session() as s:
            return list(
                s.scalars(select(JarvisBreaker).where(JarvisBreaker.reset_at.is_(None)).order_by(JarvisBreaker.id))
            )

    def chat_history(self, user: str, limit: int = 50) -> list[JarvisChat]:
        with self.store.session() as s:
            rows = list(
                s.scalars(select(JarvisChat).where(JarvisChat.user == user).order_by(JarvisChat.id.desc()).limit(limit))
            )
        return rows[::-1]
