"""A Python client for the broker and the chat WebSocket."""

from mozaiks.client.connection import ChatClosed, ChatConnection, ChatEvent, MessageAck
from mozaiks.client.http import BrokerClient, BrokerError, Session

__all__ = ["BrokerClient", "BrokerError", "ChatClosed", "ChatConnection", "ChatEvent", "MessageAck", "Session"]
