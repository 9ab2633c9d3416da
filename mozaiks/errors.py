"""The runtime's own exceptions, in one tree (as httpx has one): catch ``MozaiksError`` for all of
them, or a branch for one kind. Errors a client sees on the wire are ``protocol.errors.ApiError``
envelopes instead; these are for code calling the runtime's parts."""

from __future__ import annotations


class MozaiksError(Exception):
    """Base of every error the runtime raises on purpose."""


class NotFound(MozaiksError):
    """Nothing with this id for this app and user (another tenant's looks exactly like a missing one)."""


class ChatNotFound(NotFound):
    """No chat with this id for this app and user."""

    def __init__(self, chat_id: str) -> None:
        super().__init__(f"chat {chat_id} not found")
        self.chat_id = chat_id


class StoreError(MozaiksError):
    """A store refused a call; the subclasses say why."""


class StoreConfigError(StoreError):
    """The store URL names no backend this runtime has, or the database's schema is newer than this code."""


class ConflictError(StoreError):
    """The write conflicts with what the store holds already."""


class ChatExists(ConflictError):
    """A chat with this id exists already."""


class FencedError(ConflictError):
    """A write by an owner whose epoch is older than the chat's current one."""


class DuplicateMessageError(ConflictError):
    """A client message id that this chat has already recorded."""


class FanOutNotFound(NotFound):
    """No fan-out with this id for this app and user."""

    def __init__(self, fanout_id: str) -> None:
        super().__init__(f"fan-out {fanout_id} not found")
        self.fanout_id = fanout_id


class InvalidWrite(StoreError):
    """An append that does not continue the chat's log (a seq gap) or carries another chat's usage: a bug."""


class InvalidCursor(StoreError):
    """A page cursor this store did not hand out."""


class InvalidClientMessage(MozaiksError):
    """A client frame that is no message of the protocol; ``reason`` is its ack's reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionError(MozaiksError):
    """About a chat's session actor."""


class StaleOwnerError(SessionError):
    """This session lost ownership of its chat to a newer activation (or never had it): ask the
    directory for the chat's session again."""


class SessionGone(SessionError):
    """The session actor a handle points at no longer serves the chat: its process died
    (``crashed``), or it passivated or was fenced out (it is alive, serving another chat or none).
    Raised by ``actors.handles.SessionHandle`` for Ray's actor-gone errors and ``StaleOwnerError``."""

    def __init__(self, chat_id: str, crashed: bool) -> None:
        super().__init__(f"the session of chat {chat_id} is gone ({'crashed' if crashed else 'released'})")
        self.chat_id = chat_id
        self.crashed = crashed
