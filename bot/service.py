"""The running service: builds every part from ``Settings``, owns their lifetimes.

``start()`` applies migrations, opens the database, the Slack and model clients, starts the
HTTP server (and the Socket Mode connection), and then, in the background, closes the turns a
crash left pending (each thread gets a note) and answers the messages an earlier run accepted
but never started, in their threads' order. ``stop()`` stops taking events, gives turns in
flight a grace period, then closes everything.

Everything ``start()`` opens is closed by ``stop()``, and by ``start()`` itself when a later
step fails (a refused token, a port in use): use it as ``async with Service(settings) as
service:`` and nothing outlives the block.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Self

from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings

from bot.channel_settings import SCHEMA, WORKSPACE_DEFAULTS, StoredChannelSettings
from bot.conversation import ChainCheck, ConversationService, EndpointCapabilities, IncomingMessage
from bot.conversation.ports import Approvals
from bot.errors import ConfigError, SlackRefusedError
from bot.metrics import InstrumentedModelClient, Metrics, TimedThreadLocks
from bot.model.client import ResponsesClient
from bot.model.probe import check_chains
from bot.model.retry import RetryPolicy
from bot.model_catalogue import ModelCatalogue
from bot.retention import start_daily_prune
from bot.server import build_web_app
from bot.settings import Settings, tool_environment
from bot.slack.accept import EventIntake
from bot.slack.admins import AdminPolicy
from bot.slack.app import build_slack_app
from bot.slack.approvals import SlackApprovals
from bot.slack.assistant.context import PaneContext
from bot.slack.assistant.titles import PaneTitles
from bot.slack.budget import RateBudgets
from bot.slack.client import make_slack_client
from bot.slack.commands import SettingsCommands
from bot.slack.context import SlackContext
from bot.slack.context_guard import GuardedContext
from bot.slack.feedback import answer_endings
from bot.slack.files import FileReader
from bot.slack.identity import BotIdentity, fetch_identity
from bot.slack.language import PersonLanguages
from bot.slack.membership import ChannelMembership
from bot.slack.oauth import build_oauth_settings
from bot.slack.reply import LiveReplySinks
from bot.slack.resume import resume_held_answers
from bot.slack.users import UserDirectory
from bot.slack.workspaces import WorkspaceClients
from bot.startup_recovery import INTERRUPTED_NOTICE, StartupRecovery
from bot.thread_locks import KeyedLocks
from bot.turn_tracker import TurnTracker
from storage.conversation_state import ConversationStateStore
from storage.engine import create_engine, create_session_factory
from storage.intake import Intake
from storage.migrate import upgrade_to_head
from storage.replicas import ReplicaPresence
from storage.repositories import Store
from storage.thread_locks import DistributedThreadLocks

if TYPE_CHECKING:
    from bot.tool_runner import McpToolRunner

__all__ = ["INTERRUPTED_NOTICE", "Service"]

logger = logging.getLogger(__name__)

# A stored chain probe younger than this is trusted at start-up (restarts do not re-probe).
PROBE_MAX_AGE = 24 * 3600.0


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        shutdown_grace: float | None = None,
        environ: Mapping[str, str] | None = None,
        approvals: Approvals | None = None,
    ) -> None:
        """``environ``: where ``MCP_SERVERS``' ``headers_from_env`` are read (default: the
        process environment over the ``.env`` file); ``approvals``: asks before a tool marked
        ``require_approval`` runs (default: the asker, in the thread, with Approve / Deny)."""
        self.settings = settings
        self._environ = environ
        self._approvals = approvals
        self.approvals: Approvals | None = approvals
        self.shutdown_grace = settings.shutdown_grace if shutdown_grace is None else shutdown_grace
        self.metrics = Metrics()
        self.budgets = RateBudgets(
            share=1.0 / settings.slack_replicas, on_wait=self.metrics.slack_queue_waited
        )
        self.tracker = TurnTracker()
        # This process among replicas: the owner of the messages it accepts.
        self.replica_id = f"{socket.gethostname()[:32]}-{os.getpid()}-{secrets.token_hex(4)}"
        self.recovery: asyncio.Task[None] | None = None
        """The background recovery after start-up (done when every note is posted and every
        adopted message answered)."""
        self.port: int | None = None
        self.identity: BotIdentity | None = None
        """The bot in single-workspace mode; ``None`` with a multi-workspace install."""
        self._runner: web.AppRunner | None = None
        self._socket_handler: AsyncSocketModeHandler | None = None
        self._cleanup: list[Callable[[], Awaitable[object]]] = []
        """How to close what ``start`` opened, in the order it opened them."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _tool_runner(self) -> McpToolRunner | None:
        """The declared MCP servers' tools (None without ``MCP_SERVERS``); their header values
        are read now, so a missing variable stops the start with a line naming it."""
        configs = self.settings.mcp_server_configs
        if not configs:
            return None
        from bot.tool_runner import McpToolRunner  # the MCP SDK loads only when used
        from bot.tools.config import resolve_mcp_servers
        from bot.tools.registry import McpToolRegistry

        environ = self._environ if self._environ is not None else tool_environment()
        registry = McpToolRegistry(
            resolve_mcp_servers(configs, environ),
            log_content=self.settings.log_message_content,
        )
        self._cleanup.append(registry.aclose)
        return McpToolRunner(registry)

    async def start(self) -> None:
        """Open and start every part; if a step fails, what the earlier steps opened is
        closed before the error goes on (nothing is left running, holding a port or the
        database)."""
        try:
            await self._start()
        except BaseException:
            await self._close_opened()
            raise

    async def _start(self) -> None:
        settings = self.settings
        await upgrade_to_head(settings.database_url)
        engine = create_engine(settings.database_url)
        self._cleanup.append(engine.dispose)
        self.store = Store(create_session_factory(engine))
        self.intake = Intake(self.store)
        self.presence = ReplicaPresence(settings.database_url, replica_id=self.replica_id)
        self._cleanup.append(self.presence.aclose)
        await self.presence.announce()

        oauth_settings: AsyncOAuthSettings | None = None
        if settings.oauth_enabled:
            # Multi-workspace install: tokens come from the installations the OAuth flow saves.
            slack = make_slack_client(
                settings, anonymous=True, metrics=self.metrics, budgets=self.budgets
            )
            assert settings.slack_client_id is not None
            assert settings.slack_client_secret is not None
            oauth_settings = await build_oauth_settings(
                client_id=settings.slack_client_id,
                client_secret=settings.slack_client_secret.get_secret_value(),
                engine=engine,
                state_secret=settings.slack_state_secret.get_secret_value()
                if settings.slack_state_secret
                else None,
            )
            self.workspaces = WorkspaceClients.installed(
                installation_store=oauth_settings.installation_store,
                factory=lambda token, retry_rate_limits=True: make_slack_client(
                    settings,
                    token=token,
                    retry_rate_limits=retry_rate_limits,
                    metrics=self.metrics,
                    budgets=self.budgets,
                ),
            )
        else:
            slack = make_slack_client(settings, metrics=self.metrics, budgets=self.budgets)
            try:
                self.identity = await fetch_identity(slack)
            except SlackRefusedError as exc:
                raise ConfigError(
                    f"SLACK_BOT_TOKEN was refused by Slack ({exc.code}): "
                    "check the token and SLACK_API_URL"
                ) from None
            assert settings.slack_bot_token is not None  # settings require it without OAuth
            self.workspaces = WorkspaceClients.single(
                token=settings.slack_bot_token.get_secret_value(),
                identity=self.identity,
                client=slack,
                stream_client=make_slack_client(
                    settings, retry_rate_limits=False, metrics=self.metrics, budgets=self.budgets
                ),
            )

        model = ResponsesClient(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            connect_timeout=settings.model_connect_timeout,
            idle_timeout=settings.model_idle_timeout,
            total_timeout=settings.model_total_timeout,
            retry=RetryPolicy(max_retries=settings.model_max_retries),
        )
        self._cleanup.append(model.aclose)
        state_store = ConversationStateStore(self.store)

        async def probe(name: str) -> ChainCheck:
            return await check_chains(model, name)

        self.capabilities = EndpointCapabilities(
            store=state_store,
            endpoint=settings.openai_base_url,
            probe=probe if settings.conversation_probe else None,
            on_switch=self.metrics.transcript_switched,
        )
        self._cleanup.append(self.capabilities.aclose)
        channel_settings = StoredChannelSettings.from_environment(
            store=self.store, environment=settings
        )
        files = FileReader(
            tokens=self.workspaces,
            # Slack's file hosts (*.slack.com) and the configured API's origin (GovSlack, proxies).
            api_url=settings.slack_api_url,
            max_bytes=settings.file_max_bytes,
            max_files=settings.file_max_count,
        )
        self._cleanup.append(files.aclose)
        # Display names, admin checks and people's languages share it (one cached users.info).
        users = UserDirectory(self.workspaces)
        membership = ChannelMembership(workspaces=self.workspaces)

        async def loading_messages(message: IncomingMessage) -> list[str]:
            defaults = await channel_settings.effective(
                team_id=message.team_id, channel_id=WORKSPACE_DEFAULTS
            )
            return [str(m) for m in defaults.loading_messages or ()]  # the sink translates

        self.thread_locks = DistributedThreadLocks(
            settings.database_url, wait_seconds=settings.thread_lock_wait
        )
        self._cleanup.append(self.thread_locks.aclose)
        locks = KeyedLocks(on_wait=self.metrics.lock_waited("process"))
        sinks = LiveReplySinks(
            workspaces=self.workspaces,
            native_streaming=settings.slack_native_streaming,
            flush_interval=settings.stream_update_interval,
            final_deadline=settings.slack_final_deadline,
            journal=self.store,
            # Every finished answer ends with the feedback buttons (bot.slack.feedback).
            endings=lambda message: answer_endings(message.ts),
            loading_messages=loading_messages,
        )
        self._cleanup.append(sinks.aclose)
        tool_runner = await self._tool_runner()
        # Tool calls that need the asker's yes: asked in the thread with Approve / Deny
        # (bot.slack.approvals), unless the caller brings its own.
        slack_approvals = SlackApprovals(
            workspaces=self.workspaces, store=self.store.tool_approvals
        )
        self.approvals = self._approvals or slack_approvals
        self.conversation = ConversationService(
            intake=self.intake,
            replica_id=self.replica_id,
            locks=locks,
            thread_locks=TimedThreadLocks(self.thread_locks, self.metrics.lock_waited("database"))
            if self.thread_locks.distributed
            else None,
            store=self.store,
            locales=users,  # the same cached users.info as the display names
            model=InstrumentedModelClient(model, self.metrics),
            sinks=sinks,
            context=GuardedContext(
                PaneContext(
                    SlackContext(
                        workspaces=self.workspaces,
                        users=users,
                        files=files,
                        history_chars=settings.thread_context_chars,
                        max_file_bytes=settings.file_max_bytes,
                    ),
                    threads=self.store.assistant_threads,
                    workspaces=self.workspaces,
                    membership=membership,
                    users=users,
                    history_chars=settings.thread_context_chars,
                )
            ),
            identity_salt=settings.identity_salt,
            log_message_content=settings.log_message_content,
            settings=channel_settings,
            transcripts=state_store,
            capabilities=self.capabilities,
            transcript_chars=settings.thread_context_chars,
            on_recovery=self.metrics.conversation_recovered,
            tool_runner=tool_runner,
            approvals=self.approvals,
            tool_calls=self.store.tool_calls,
            on_tool_call=self.metrics.tool_called,
            max_tool_rounds=settings.tool_max_rounds,
            tool_turn_timeout=settings.tool_turn_timeout,
        )
        self.languages = PersonLanguages(locales=users, settings=channel_settings)
        admins = AdminPolicy(
            workspaces=self.workspaces, admin_user_ids=settings.admin_ids, users=users
        )
        catalogue = ModelCatalogue(list_models=model.list_models, allowed=settings.allowed_models)
        socket_mode = settings.effective_mode == "socket"
        signing_secret = settings.slack_signing_secret
        self.event_intake = EventIntake(
            conversation=self.conversation,
            workspaces=self.workspaces,
            metrics=self.metrics,
            tracker=self.tracker,
            # A pane thread's title, after its first answer (bot.slack.assistant.titles).
            after_answer=PaneTitles(
                threads=self.store.assistant_threads, workspaces=self.workspaces
            ).after_answer,
        )
        bolt = build_slack_app(
            intake=self.event_intake,
            client=slack,
            signing_secret=signing_secret.get_secret_value() if signing_secret else None,
            workspaces=self.workspaces,
            oauth_settings=oauth_settings,
            conversation=self.conversation,
            metrics=self.metrics,
            tracker=self.tracker,
            settings=channel_settings,
            commands=SettingsCommands(
                command=settings.slack_command,
                store=self.store,
                settings=channel_settings,
                admins=admins,
                catalogue=catalogue,
                prices=settings.prices,
                # mcp_servers is checked against the servers MCP_SERVERS declares.
                schema=SCHEMA.declaring(mcp_servers=[c.name for c in settings.mcp_server_configs]),
            ),
            admins=admins,
            catalogue=catalogue,
            store=self.store,
            verify_requests=not socket_mode,
            membership=membership,
            pane_threads=self.store.assistant_threads,
            feedback=self.store.feedback,
            approvals=slack_approvals,
            languages=self.languages,
        )
        # Answers the model finished but Slack did not hold whole: their threads' locks are
        # taken now (before any event, so a follow-up waits for them) and they are finished in
        # the background.
        self._cleanup.append(
            await resume_held_answers(
                store=self.store,
                sinks=sinks,
                locks=locks,
                thread_locks=self.thread_locks if self.thread_locks.distributed else None,
                languages=self.languages,
            )
        )
        # What a previous run left: listed now (two quick queries, however many), handled once
        # the service listens, so /healthz and new events never wait for it.
        pending = await self.store.list_pending_turns()
        adopted = await self.intake.adopt_orphans(
            owner=self.replica_id, is_alive=self.presence.is_alive
        )

        web_app = build_web_app(
            slack_app=None if socket_mode else bolt,
            readiness=self._readiness,
            metrics=self.metrics,
            accepting=lambda: self.tracker.accepting,
            signing_secret=None
            if socket_mode or signing_secret is None
            else signing_secret.get_secret_value(),
            oauth_flow=bolt.oauth_flow,
        )
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        self._cleanup.append(self._runner.cleanup)
        site = web.TCPSite(self._runner, settings.host, settings.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else settings.port

        if socket_mode and settings.slack_app_token is not None:
            self._socket_handler = AsyncSocketModeHandler(
                bolt, app_token=settings.slack_app_token.get_secret_value(), web_client=slack
            )
            self._cleanup.append(self._close_socket_mode)
            await self._socket_handler.connect_async()  # type: ignore[no-untyped-call]
        self._cleanup.append(start_daily_prune(self.store, settings.retention_days))
        if settings.conversation_probe and settings.conversation_state == "auto":
            # In the background: a slow or failing endpoint must not delay start-up.
            await self.capabilities.probe_if_stale(settings.default_model, max_age=PROBE_MAX_AGE)
        recovery = StartupRecovery(
            store=self.store,
            thread_locks=self.thread_locks,
            workspaces=self.workspaces,
            tracker=self.tracker,
            resume=self.event_intake.resume,
            languages=self.languages,
        )
        self.recovery = asyncio.create_task(recovery.run(pending, adopted))
        logger.info(
            "service started",
            extra={
                "mode": settings.effective_mode,
                "port": self.port,
                "team": self.identity.team_id if self.identity else "(installations)",
            },
        )

    async def _readiness(self) -> str | None:
        try:
            await self.store.ping()
            if not await self.store.schema_is_current():
                return "database migrations are not applied"
        except Exception as exc:  # readiness must answer, whatever the database does
            return f"database unavailable ({type(exc).__name__})"
        return None

    async def stop(self) -> None:
        self.tracker.accepting = False
        # First, so no new event arrives while the turns in flight finish.
        await self._close_socket_mode()
        if not await self.tracker.wait_idle(self.shutdown_grace):
            logger.warning(
                "shutdown grace period ended with turns in flight; closing them with a note",
                extra={"in_flight": self.tracker.active},
            )
            await self.tracker.cancel_all()
        if self.recovery is not None:
            # Past the grace period the recovery was cancelled with the turns; what it did
            # not reach stays stored for the next start.
            self.recovery.cancel()
            await asyncio.gather(self.recovery, return_exceptions=True)
        await self._close_opened()
        logger.info("service stopped")

    async def _close_socket_mode(self) -> None:
        handler, self._socket_handler = self._socket_handler, None
        if handler is not None:
            await handler.disconnect_async()  # type: ignore[no-untyped-call]
            await handler.close_async()  # type: ignore[no-untyped-call]

    async def _close_opened(self) -> None:
        """Close what ``start`` opened, newest first (the HTTP server before the clients it
        uses, the database last); one that fails to close does not keep the others open."""
        while self._cleanup:
            close = self._cleanup.pop()
            try:
                await close()
            except Exception:
                logger.exception("could not close a part of the service")

    async def run_forever(self) -> None:
        """Start, wait for SIGTERM or SIGINT, stop."""
        async with self:
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stopping.set)
            await stopping.wait()
            logger.info("stop signal received")
