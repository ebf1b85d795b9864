"""The turn core: one user message in, one model answer out, one chain per thread.

Pure logic over small interfaces (a model client, reply sinks, the thread's context, the
settings, the stores): no Slack SDK, no HTTP client, no SQLAlchemy (a test checks every import).
The Slack edge turns events into ``IncomingMessage``; ``ConversationService`` accepts each once,
answers a thread's messages one at a time in the order they were written, admits each turn
under the limits, calls the model with the thread's ``previous_response_id`` and advances the
chain only when the answer was delivered.

Modules, each one job:

- ``ports``: the messages in and outcomes out, and the Protocols the adapters implement
- ``service``: accept once, answer in order, who the message is for, admission
- ``limits``: the hourly limit and daily token budgets, and the reservation a turn holds
- ``turn``: one admitted turn, from input to a closed turn
- ``reply``: one model call streamed into the reply; notes told to the thread
- ``request``: the Responses request (settings, chain, safety identifier, cache key)
- ``history``: chain or transcript, the service's own transcript
- ``recovery``: a lost, refused or ignored chain re-sent from the transcript
- ``capabilities``: whether the endpoint keeps chains (probes, stored per endpoint+model)
- ``notes``: what the turn itself tells a thread
"""

from bot.conversation.capabilities import (
    CapabilityStore,
    ChainCheck,
    ChainProbe,
    EndpointCapabilities,
    endpoint_key,
)
from bot.conversation.history import select_transcript
from bot.conversation.notes import (
    BUSY_NOTE,
    RESEND_FAILED_NOTE,
    RESENT_NOTE,
    SHUTDOWN_NOTE,
    STOPPED_NOTE,
    STORAGE_NOTE,
)
from bot.conversation.ports import (
    ApprovalRequest,
    Approvals,
    ContextSource,
    ConversationStore,
    IncomingMessage,
    LocaleSource,
    MessageIntake,
    ModelClient,
    PersonLocale,
    ReplySink,
    ReplySinks,
    SettingsSource,
    StepSink,
    StepStatus,
    ThreadLockProvider,
    Ticket,
    ToolStep,
    TranscriptStore,
    TurnCompletion,
    TurnInput,
    TurnOutcome,
    TurnStopped,
)
from bot.conversation.recovery import continuity_broken
from bot.conversation.service import ConversationService

__all__ = [
    "BUSY_NOTE",
    "RESEND_FAILED_NOTE",
    "RESENT_NOTE",
    "SHUTDOWN_NOTE",
    "STOPPED_NOTE",
    "STORAGE_NOTE",
    "ApprovalRequest",
    "Approvals",
    "CapabilityStore",
    "ChainCheck",
    "ChainProbe",
    "ContextSource",
    "ConversationService",
    "ConversationStore",
    "EndpointCapabilities",
    "IncomingMessage",
    "LocaleSource",
    "MessageIntake",
    "ModelClient",
    "PersonLocale",
    "ReplySink",
    "ReplySinks",
    "SettingsSource",
    "StepSink",
    "StepStatus",
    "ThreadLockProvider",
    "Ticket",
    "ToolStep",
    "TranscriptStore",
    "TurnCompletion",
    "TurnInput",
    "TurnOutcome",
    "TurnStopped",
    "continuity_broken",
    "endpoint_key",
    "select_transcript",
]
