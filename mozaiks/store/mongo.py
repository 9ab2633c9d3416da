"""MongoDB backend (PyMongo's async API): the store of a cluster whose processes share no disk.

On a replica set or sharded cluster an append is one multi-document transaction. A standalone
mongod has none, so the append orders its writes to make the fenced update of the chat document
the commit point:

1. record the client message id (a unique index is the duplicate check);
2. upsert the events, tagged with the writer's epoch and an attempt id; the unique index on
   (chat_id, seq) refuses a slot that a newer epoch already holds;
3. insert the usage rows;
4. update the chat only if its epoch and last_seq are still the ones read first: the commit point.

Events past the chat's ``last_seq`` are uncommitted and no reader sees them. When a step before
the commit point fails, the attempt's writes are deleted. When the process dies in between, its
leftovers stay invisible and the next attempt takes them over. (What standalone cannot give:
usage rows of an attempt that died count in the totals.)

Free-form payloads (snapshot, context, event data) are stored as JSON text: the JSON Schemas that
tool specs carry have "$"-prefixed keys ($ref, $defs) that update operators reject, and it keeps
both backends accepting exactly the same values.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from pymongo import AsyncMongoClient, IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from mozaiks.errors import ChatExists, ChatNotFound, ConflictError, FanOutNotFound
from mozaiks.store._shared import (
    INSTALLED_COLUMNS, USAGE_KEYS, check_seqs, check_usage, decode_cursor, encode_cursor, installed_record,
    installed_row, normalize_ts, page_size, utc_now,
)
from mozaiks.store.base import (
    SCHEMA_VERSION, ChatRecord, ChildStatus, DuplicateMessageError, FanOutRecord, FencedError, InstalledWorkflow,
    Store, StoredEvent, UsageRecord, Wakeup,
)

Doc = dict[str, Any]
_DUPLICATE_KEY = 11000
_NO_IDEMPOTENCY_KEY = {"idempotency_key": False}
_INSTALLED_FIELDS = tuple(INSTALLED_COLUMNS.split(", "))


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _chat_doc(record: ChatRecord, idempotency_key: str | None) -> Doc:
    doc = record.model_dump(exclude={"chat_id"})
    doc.update(_id=record.chat_id, snapshot=_dump(record.snapshot), context=_dump(record.context))
    if idempotency_key is not None:
        doc["idempotency_key"] = idempotency_key
    return doc


def _chat(doc: Mapping[str, Any]) -> ChatRecord:
    fields = {key: value for key, value in doc.items() if key != "_id"}
    fields.update(chat_id=doc["_id"], snapshot=json.loads(doc["snapshot"]), context=json.loads(doc["context"]))
    return ChatRecord.model_validate(fields)


class MongoStore(Store):
    def __init__(self, url: str, database: str | None = None) -> None:
        # An acknowledged write must survive a crash: on the journal, and on a majority of a replica
        # set. Set on the client because transactions take their write concern from it.
        self._client: AsyncMongoClient[Doc] = AsyncMongoClient(url, w="majority", journal=True)
        self._db = self._client[database] if database else self._client.get_default_database(default="mozaiks")
        self._transactions = False

    async def init(self) -> None:
        db = self._db
        await db.chats.create_indexes([
            IndexModel([("app_id", 1), ("user_id", 1), ("created_at", -1), ("_id", -1)], name="by_owner"),
            IndexModel([("app_id", 1), ("user_id", 1), ("workflow_name", 1), ("status", 1)], name="by_workflow"),
            # Partial: only chats created with a key take part in its uniqueness.
            IndexModel([("app_id", 1), ("user_id", 1), ("idempotency_key", 1)], name="by_idempotency_key",
                       unique=True, partialFilterExpression={"idempotency_key": {"$type": "string"}}),
        ])
        await db.events.create_indexes([IndexModel([("chat_id", 1), ("seq", 1)], name="by_seq", unique=True)])
        await db.client_messages.create_indexes(
            [IndexModel([("chat_id", 1), ("message_id", 1)], name="by_message", unique=True)])
        await db.usage.create_indexes([
            IndexModel([("app_id", 1), ("user_id", 1), ("timestamp", 1)], name="by_user"),
            IndexModel([("app_id", 1), ("timestamp", 1)], name="by_app"),  # app-wide budgets per period
            IndexModel([("chat_id", 1), ("timestamp", 1)], name="by_chat"),
            IndexModel([("timestamp", 1)], name="by_time"),  # pruning by retention
        ])
        await db.wakeups.create_indexes([IndexModel([("wake_at", 1)], name="by_time")])
        await db.completions.create_indexes(
            [IndexModel([("app_id", 1), ("user_id", 1), ("workflow_name", 1)], name="by_workflow", unique=True)])
        await db.subscriptions.create_indexes(
            [IndexModel([("app_id", 1), ("user_id", 1)], name="by_user", unique=True)])
        await db.installed_workflows.create_indexes(
            [IndexModel([("app_id", 1), ("name", 1)], name="by_name", unique=True)])
        hello = await self._client.admin.command("hello")
        self._transactions = "setName" in hello or hello.get("msg") == "isdbgrid"

    async def close(self) -> None:
        await self._client.close()

    # -- chats -------------------------------------------------------------------------------
    async def create_chat(self, chat: ChatRecord, idempotency_key: str | None = None) -> tuple[ChatRecord, bool]:
        record = chat.model_copy(update={
            "created_at": normalize_ts(chat.created_at), "updated_at": normalize_ts(chat.updated_at),
            "schema_version": SCHEMA_VERSION,
        })
        # One insert, atomic on its own: the idempotency key lives in the chat document under a
        # unique index, so two racing creates with one key cannot both succeed.
        try:
            await self._db.chats.insert_one(_chat_doc(record, idempotency_key))
        except DuplicateKeyError as exc:
            if idempotency_key is not None:
                found = await self._db.chats.find_one(
                    {"app_id": record.app_id, "user_id": record.user_id, "idempotency_key": idempotency_key},
                    _NO_IDEMPOTENCY_KEY)
                if found is not None:
                    return _chat(found), False
            raise ChatExists(f"chat {record.chat_id} already exists") from exc
        return record, True

    async def get_chat(self, app_id: str, user_id: str, chat_id: str) -> ChatRecord | None:
        doc = await self._db.chats.find_one(_owned(app_id, user_id, chat_id), _NO_IDEMPOTENCY_KEY)
        return None if doc is None else _chat(doc)

    async def list_chats(self, app_id: str, user_id: str, limit: int = 20,
                         cursor: str | None = None) -> tuple[list[ChatRecord], str | None]:
        size = page_size(limit)
        query: Doc = {"app_id": app_id, "user_id": user_id}
        if cursor is not None:
            created_at, chat_id = decode_cursor(cursor)
            query["$or"] = [{"created_at": {"$lt": created_at}}, {"created_at": created_at, "_id": {"$lt": chat_id}}]
        # One document more than the page tells whether another page follows.
        docs = await (self._db.chats.find(query, _NO_IDEMPOTENCY_KEY)
                      .sort([("created_at", -1), ("_id", -1)]).limit(size + 1).to_list())
        chats = [_chat(doc) for doc in docs[:size]]
        more = len(docs) > size
        return chats, encode_cursor(chats[-1].created_at, chats[-1].chat_id) if more else None

    async def has_completed(self, app_id: str, user_id: str, workflow_name: str) -> bool:
        owner = {"app_id": app_id, "user_id": user_id, "workflow_name": workflow_name}
        if await self._db.completions.find_one(owner, {"_id": True}) is not None:
            return True
        # Without transactions the fact is recorded after the commit point; a chat whose writer died
        # in between still says so itself (its next append records the fact before changing that).
        # This is also what a database from before the completions collection has to tell.
        return await self._db.chats.find_one({**owner, "status": "completed"}, {"_id": True}) is not None

    # -- ownership and the event log ------------------------------------------------------------
    async def claim(self, app_id: str, user_id: str, chat_id: str) -> int:
        doc = await self._db.chats.find_one_and_update(
            _owned(app_id, user_id, chat_id), {"$inc": {"epoch": 1}}, {"epoch": True},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            raise ChatNotFound(chat_id)
        return int(doc["epoch"])

    async def append(self, app_id: str, user_id: str, chat_id: str, epoch: int, events: list[StoredEvent],
                     snapshot: dict[str, Any] | None = None, status: str | None = None,
                     phase: str | None = None, client_message_id: str | None = None,
                     usage: list[UsageRecord] | None = None) -> None:
        usage = usage or []
        check_usage(usage, app_id, user_id, chat_id)
        changes: Doc = {"updated_at": utc_now()}
        for field, value in (("snapshot", None if snapshot is None else _dump(snapshot)),
                             ("status", status), ("phase", phase)):
            if value is not None:
                changes[field] = value
        write = _Append(self._db, app_id, user_id, chat_id, epoch, events, changes, client_message_id, usage)
        if not self._transactions:
            await write(None)
            return
        async with self._client.start_session() as session:
            await session.with_transaction(write)

    async def read_events(self, app_id: str, user_id: str, chat_id: str, after_seq: int = 0,
                          limit: int | None = None) -> list[StoredEvent]:
        chat = await self._db.chats.find_one(_owned(app_id, user_id, chat_id), {"last_seq": True})
        if chat is None or (limit is not None and limit < 1):
            return []
        # Bounded by last_seq: events past it belong to an append that has not committed.
        found = self._db.events.find(
            {"chat_id": chat_id, "app_id": app_id, "user_id": user_id,
             "seq": {"$gt": after_seq, "$lte": chat["last_seq"]}}).sort("seq", 1)
        if limit is not None:
            found = found.limit(limit)
        return [StoredEvent(seq=d["seq"], type=d["type"], timestamp=d["timestamp"], agent=d["agent"],
                            data=json.loads(d["data"])) for d in await found.to_list()]

    # -- usage and counters ------------------------------------------------------------------
    async def usage_totals(self, app_id: str, user_id: str | None = None, chat_id: str | None = None,
                           since: str | None = None) -> dict[str, int]:
        match: Doc = {"app_id": app_id}
        if user_id is not None:
            match["user_id"] = user_id
        if chat_id is not None:
            match["chat_id"] = chat_id
        if since is not None:
            match["timestamp"] = {"$gte": normalize_ts(since)}
        group: Doc = {"_id": None, **{key: {"$sum": f"${key}"} for key in USAGE_KEYS}}
        rows = await (await self._db.usage.aggregate([{"$match": match}, {"$group": group}])).to_list()
        return {key: int(rows[0][key]) if rows else 0 for key in USAGE_KEYS}

    async def counter_add(self, key: str, amount: int) -> int:
        # An upsert matching on _id alone is retried by the server when two create the counter at once.
        doc = await self._db.counters.find_one_and_update(
            {"_id": key}, {"$inc": {"value": amount}}, upsert=True, return_document=ReturnDocument.AFTER)
        assert doc is not None  # an upsert returning the document after always has one
        return int(doc["value"])

    async def counter_try_consume(self, key: str, amount: int, limit: int) -> tuple[bool, int]:
        room = {"_id": key, "value": {"$lte": limit - amount}}
        consume = {"$inc": {"value": amount}}
        try:
            # A missing counter is 0: upserting creates it at ``amount``, which fits iff amount <= limit.
            doc = await self._db.counters.find_one_and_update(
                room, consume, upsert=amount <= limit, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            # The counter exists, so the upsert tried to create it again: it is either full or was
            # created by a racing caller a moment ago. Try again on the existing document only.
            doc = await self._db.counters.find_one_and_update(room, consume, return_document=ReturnDocument.AFTER)
        if doc is None:
            return False, await self.counter_get(key)
        return True, int(doc["value"])

    async def prune_usage(self, before: str) -> int:
        result = await self._db.usage.delete_many({"timestamp": {"$lt": normalize_ts(before)}})
        return int(result.deleted_count)

    async def counter_get(self, key: str) -> int:
        doc = await self._db.counters.find_one({"_id": key})
        return 0 if doc is None else int(doc["value"])

    # -- subscriptions -------------------------------------------------------------------------
    async def get_subscription(self, app_id: str, user_id: str) -> str | None:
        doc = await self._db.subscriptions.find_one({"app_id": app_id, "user_id": user_id})
        return None if doc is None else str(doc["plan"])

    async def set_subscription(self, app_id: str, user_id: str, plan: str | None) -> None:
        owner = {"app_id": app_id, "user_id": user_id}
        if plan is None:
            await self._db.subscriptions.delete_one(owner)
            return
        change = {"$set": {"plan": plan, "updated_at": utc_now()}}
        try:
            await self._db.subscriptions.update_one(owner, change, upsert=True)
        except DuplicateKeyError:
            # Two upserts raced to create it; the document exists now, so a plain update lands.
            await self._db.subscriptions.update_one(owner, change)

    # -- installed workflows -------------------------------------------------------------------
    async def put_installed_workflow(self, record: InstalledWorkflow) -> None:
        # The same row form as the SQL stores: the files' JSON text keeps "$"/"." in names storable.
        doc = dict(zip(_INSTALLED_FIELDS, installed_row(record), strict=True))
        owner = {"app_id": record.app_id, "name": record.name}
        try:
            await self._db.installed_workflows.replace_one(owner, doc, upsert=True)
        except DuplicateKeyError:  # two upserts raced to create it; now it exists, a replace lands
            await self._db.installed_workflows.replace_one(owner, doc)

    async def get_installed_workflow(self, app_id: str, name: str) -> InstalledWorkflow | None:
        doc = await self._db.installed_workflows.find_one({"app_id": app_id, "name": name}, {"_id": 0})
        return None if doc is None else installed_record(doc)

    async def list_installed_workflows(self, app_id: str) -> list[InstalledWorkflow]:
        cursor = self._db.installed_workflows.find({"app_id": app_id}, {"_id": 0}).sort("name", 1)
        return [installed_record(doc) async for doc in cursor]

    async def delete_installed_workflow(self, app_id: str, name: str) -> bool:
        result = await self._db.installed_workflows.delete_one({"app_id": app_id, "name": name})
        return result.deleted_count > 0

    # -- wake-ups ----------------------------------------------------------------------------
    async def set_wakeup(self, app_id: str, user_id: str, chat_id: str, wake_at: float | None) -> None:
        owned = {"_id": chat_id, "app_id": app_id, "user_id": user_id}
        if wake_at is None:
            await self._db.wakeups.delete_one(owned)
            return
        try:
            await self._db.wakeups.update_one(owned, {"$set": {"wake_at": wake_at}}, upsert=True)
        except DuplicateKeyError:
            pass  # the id belongs to another app's or user's chat: never touched from here

    async def list_wakeups(self) -> list[Wakeup]:
        docs = await self._db.wakeups.find({}).sort("wake_at", 1).to_list()
        return [Wakeup(app_id=d["app_id"], user_id=d["user_id"], chat_id=d["_id"], wake_at=d["wake_at"]) for d in docs]

    # -- fan-outs ------------------------------------------------------------------------------
    # A fan-out is read and changed whole (a handful of children), so it is one JSON string in
    # its document: a child's result may hold keys MongoDB refuses as field names.
    async def create_fanout(self, fanout: FanOutRecord) -> FanOutRecord:
        with contextlib.suppress(DuplicateKeyError):
            await self._db.fanouts.insert_one({"_id": fanout.fanout_id, "app_id": fanout.app_id,
                                               "user_id": fanout.user_id, "parent_chat_id": fanout.parent_chat_id,
                                               "body": fanout.model_dump_json()})
        found = await self.get_fanout(fanout.app_id, fanout.user_id, fanout.fanout_id)
        if found is None:
            raise ConflictError(f"fan-out {fanout.fanout_id} belongs to another app or user")
        return found

    async def get_fanout(self, app_id: str, user_id: str, fanout_id: str) -> FanOutRecord | None:
        doc = await self._db.fanouts.find_one(_owned(app_id, user_id, fanout_id))
        return None if doc is None else FanOutRecord.model_validate_json(doc["body"])

    async def set_child_status(self, app_id: str, user_id: str, fanout_id: str, index: int, status: ChildStatus,
                               *, result: Any = None, error: str | None = None,
                               only_from: tuple[ChildStatus, ...] = ("pending", "running")) -> tuple[bool, FanOutRecord]:
        while True:
            doc = await self._db.fanouts.find_one(_owned(app_id, user_id, fanout_id))
            if doc is None:
                raise FanOutNotFound(fanout_id)
            found = FanOutRecord.model_validate_json(doc["body"])
            changed = found.with_child(index, status, result, error, only_from)
            if changed is None:
                return False, found
            # Compare-and-set on the body read: a racing writer's change makes this match nothing.
            written = await self._db.fanouts.update_one({"_id": fanout_id, "body": doc["body"]},
                                                        {"$set": {"body": changed.model_dump_json()}})
            if written.modified_count:
                return True, changed


def _owned(app_id: str, user_id: str, chat_id: str) -> Doc:
    return {"_id": chat_id, "app_id": app_id, "user_id": user_id}


@dataclass(frozen=True)
class _Append:
    """One append's writes, in commit-point order; run once alone or as a transaction's callback
    (which the driver may run again on a transient error)."""

    db: AsyncDatabase[Doc]
    app_id: str
    user_id: str
    chat_id: str
    epoch: int
    events: list[StoredEvent]
    changes: Doc  # the chat's fields to set at the commit point, besides last_seq
    client_message_id: str | None
    usage: list[UsageRecord]

    async def __call__(self, session: AsyncClientSession | None) -> None:
        db, chat_id, epoch = self.db, self.chat_id, self.epoch
        owned = _owned(self.app_id, self.user_id, chat_id)
        chat = await db.chats.find_one(owned, {"epoch": True, "last_seq": True, "status": True, "workflow_name": True},
                                       session=session)
        if chat is None:
            raise ChatNotFound(chat_id)
        if chat["epoch"] != epoch:
            raise FencedError(f"chat {chat_id}: epoch {epoch} is stale (current {chat['epoch']})")
        last_seq = chat["last_seq"]
        # Tags every write of this attempt, so a failure deletes exactly these and a later attempt
        # can tell a dead attempt's leftovers from a committed record.
        tag = {"epoch": epoch, "attempt": uuid4().hex, "schema_version": SCHEMA_VERSION}
        try:
            if self.client_message_id is not None:
                await self._record_message(session, tag, last_seq)
            check_seqs(chat_id, self.events, last_seq)
            if self.events:
                await self._upsert_events(session, tag)
            if self.usage:
                await db.usage.insert_many(
                    [{**u.model_dump(), "timestamp": normalize_ts(u.timestamp), **tag} for u in self.usage],
                    session=session)
            if chat["status"] == "completed":
                await self._record_completion(session, chat["workflow_name"])
        except BaseException:
            await self._undo(session, tag, last_seq)
            raise
        # The commit point. If this call itself fails its outcome is unknown, so nothing is undone:
        # uncommitted leftovers are invisible and the next attempt takes them over.
        result = await db.chats.update_one(
            {**owned, "epoch": epoch, "last_seq": last_seq},
            {"$set": {**self.changes, "last_seq": last_seq + len(self.events)}}, session=session)
        if result.matched_count == 0:
            await self._undo(session, tag, last_seq)
            raise await self._refusal(session, owned)
        if self.changes.get("status") == "completed":
            await self._record_completion(session, chat["workflow_name"])

    async def _record_completion(self, session: AsyncClientSession | None, workflow_name: str) -> None:
        # An upsert on the unique index's fields: the server retries one that races another.
        await self.db.completions.update_one(
            {"app_id": self.app_id, "user_id": self.user_id, "workflow_name": workflow_name},
            {"$setOnInsert": {"completed_at": utc_now()}}, upsert=True, session=session)

    async def _record_message(self, session: AsyncClientSession | None, tag: Doc, last_seq: int) -> None:
        chat_id, message_id = self.chat_id, self.client_message_id
        record = {"chat_id": chat_id, "message_id": message_id, "created_at": utc_now(),
                  "seq": last_seq + 1 if self.events else None, **tag}
        duplicate = DuplicateMessageError(f"chat {chat_id}: client message {message_id} already recorded")
        for _ in range(3):  # a record can vanish between our insert and our read when its attempt is undone
            try:
                # A copy: the driver adds an _id to what it inserts, and a takeover must keep the old one.
                await self.db.client_messages.insert_one(dict(record), session=session)
                return
            except DuplicateKeyError:
                if session is not None:  # in a transaction a record exists only if its append committed
                    raise duplicate from None
            existing = await self.db.client_messages.find_one({"chat_id": chat_id, "message_id": message_id})
            if existing is None:
                continue
            if existing["epoch"] > self.epoch:
                raise FencedError(f"chat {chat_id}: epoch {self.epoch} is stale (a newer owner has this message)")
            if await self._committed(existing):
                raise duplicate
            # A failed or dead attempt's leftover: take it over, unless someone else just did.
            taken = await self.db.client_messages.replace_one(
                {"_id": existing["_id"], "attempt": existing["attempt"]}, record)
            if taken.matched_count:
                return
            raise duplicate
        raise duplicate

    async def _committed(self, record: Doc) -> bool:
        """Whether the attempt that wrote this client message record got past its commit point."""
        if record["seq"] is None:  # an append without events left nothing to check against
            return True
        event = await self.db.events.find_one({"chat_id": self.chat_id, "seq": record["seq"]}, {"attempt": True})
        chat = await self.db.chats.find_one({"_id": self.chat_id}, {"last_seq": True})
        return (event is not None and chat is not None and event["attempt"] == record["attempt"]
                and record["seq"] <= chat["last_seq"])

    async def _upsert_events(self, session: AsyncClientSession | None, tag: Doc) -> None:
        # Overwrites only slots of this epoch or older, i.e. leftovers of attempts that never
        # committed (seqs past last_seq); a slot of a newer epoch makes the upsert insert a
        # duplicate (chat_id, seq), which the unique index refuses.
        writes = [UpdateOne({"chat_id": self.chat_id, "seq": e.seq, "epoch": {"$lte": self.epoch}},
                            {"$set": {"app_id": self.app_id, "user_id": self.user_id, "type": e.type,
                                      "timestamp": e.timestamp, "agent": e.agent, "data": _dump(e.data), **tag}},
                            upsert=True)
                  for e in self.events]
        try:
            await self.db.events.bulk_write(writes, session=session)
        except BulkWriteError as exc:
            if any(error.get("code") == _DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise FencedError(f"chat {self.chat_id}: a newer owner has written these seqs") from exc
            raise

    async def _undo(self, session: AsyncClientSession | None, tag: Doc, last_seq: int) -> None:
        if session is not None:  # the transaction's abort undoes everything
            return
        attempt = tag["attempt"]
        # Best effort: what cannot be deleted now stays uncommitted, invisible and overwritable,
        # and the error that made us undo is the one worth raising.
        with contextlib.suppress(PyMongoError):
            await self.db.client_messages.delete_many({"chat_id": self.chat_id, "attempt": attempt})
            await self.db.events.delete_many({"chat_id": self.chat_id, "seq": {"$gt": last_seq}, "attempt": attempt})
            await self.db.usage.delete_many({"chat_id": self.chat_id, "attempt": attempt})

    async def _refusal(self, session: AsyncClientSession | None, owned: Doc) -> Exception:
        chat = await self.db.chats.find_one(owned, {"epoch": True, "last_seq": True}, session=session)
        if chat is None:
            return ChatNotFound(self.chat_id)
        if chat["epoch"] != self.epoch:
            return FencedError(f"chat {self.chat_id}: epoch {self.epoch} is stale (current {chat['epoch']})")
        return ConflictError(f"chat {self.chat_id}: last_seq moved to {chat['last_seq']} during the append")
