"""Every channel setting, declared once.

A setting is a name, a kind of value (type and range, see ``kinds``), a line of help, the label
the settings form and the Home tab show, the layers it may be set on (a channel, the
workspace's defaults, or both) and its default below every layer (a constant, or a value of the
service's environment such as ``DEFAULT_MODEL``). The slash command's grammar and help, the
settings form, the Home tab, the CLI's flags (``mcp_servers`` → ``--mcp-servers``), the
validate-and-save service and the storage columns all derive from ``SCHEMA``: adding a setting
is one entry here plus one migration adding its column (``tests/core/test_settings_schema.py``
checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from bot.channel_settings.kinds import (
    Choice,
    InvalidSetting,
    Kind,
    Name,
    NameList,
    Number,
    OnOff,
    Text,
    TextList,
    WholeNumber,
)
from bot.i18n import AUTO, N_, SUPPORTED, t

__all__ = [
    "BOTH",
    "CHANNEL",
    "DEFAULT_LOADING_MESSAGES",
    "DEFAULT_SUGGESTED_PROMPTS",
    "MAX_COUNT",
    "MAX_INSTRUCTIONS_CHARS",
    "SCHEMA",
    "WORKSPACE",
    "WORKSPACE_DEFAULTS",
    "WORKSPACE_ONLY",
    "Layer",
    "Schema",
    "Setting",
    "show_value",
]

Layer = Literal["channel", "workspace"]
CHANNEL: Final = "channel"
WORKSPACE: Final = "workspace"
BOTH: Final[frozenset[Layer]] = frozenset({"channel", "workspace"})
WORKSPACE_ONLY: Final[frozenset[Layer]] = frozenset({"workspace"})
CHANNEL_ONLY: Final[frozenset[Layer]] = frozenset({"channel"})

WORKSPACE_DEFAULTS: Final = ""
"""The channel id under which a workspace's defaults are stored (``storage.models``)."""

MAX_INSTRUCTIONS_CHARS: Final = 3_000
"""Slack's settings form cannot hold more: a ``plain_text_input`` takes at most 3,000
characters. Every path uses the same limit, so whatever is set can be shown in the form and
saved back unchanged."""
NOT_SET: Final = N_("not set")
"""How a value that inherits is shown."""
MAX_MODEL_NAME_CHARS: Final = 200
MAX_OUTPUT_TOKENS_LIMIT: Final = 1_000_000
MAX_COUNT: Final = 2**31 - 1
"""The largest budget or count: what every engine's integer column holds (PostgreSQL
``integer``; ``storage.models.INTEGER_MAX``, which a test compares). A bigger budget is no
budget in practice: use 0."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One channel setting (see the module docstring)."""

    name: str
    kind: Kind
    help: str
    """What it does, in a few words (the slash command's help, the CLI's ``--help``); a text of
    the catalogue (``bot.i18n``): shown through ``t``."""
    label: str
    """How the settings form and the Home tab name it (a catalogue text, like ``help``)."""
    layers: frozenset[Layer] = BOTH
    default: Any = None
    """The value below every layer; ``None``: the model's own default."""
    env: str | None = None
    """The field of ``bot.settings.Settings`` whose value is the default instead."""
    from_catalogue: bool = False
    """A model name: it must be one of ``ALLOWED_MODELS`` (when set), and the form offers the
    endpoint's list of models."""

    @property
    def flag(self) -> str:
        """The CLI's option for it."""
        return "--" + self.name.replace("_", "-")

    @property
    def workspace_only(self) -> bool:
        return CHANNEL not in self.layers

    @property
    def valid(self) -> str:
        """The valid values in words, with the layer when it is not both."""
        if self.workspace_only:
            return t("{valid}, workspace default only", valid=self.kind.valid)
        if WORKSPACE not in self.layers:
            return t("{valid}, channels only", valid=self.kind.valid)
        return self.kind.valid

    def allowed_on(self, layer: Layer) -> bool:
        return layer in self.layers

    def parse(self, raw: str, *, allowed_models: Collection[str] = ()) -> Any:
        """The value typed as ``raw``, or ``InvalidSetting`` naming the valid range.

        ``allowed_models`` is ``ALLOWED_MODELS``: when not empty, a model must be one of them.
        """
        value = self.kind.parse(self.name, raw)
        if self.from_catalogue and allowed_models and value not in allowed_models:
            raise InvalidSetting(
                t(
                    "{name} must be one of the allowed models: {models}",
                    name=self.name,
                    models=", ".join(allowed_models),
                )
            )
        return value

    def show(self, value: Any) -> str:
        """The value as people read it (``not set`` for inherit)."""
        return t(NOT_SET) if value is None else self.kind.show(value)

    def text(self, value: Any) -> str:
        """The value as text that parses back to exactly the same value."""
        return self.kind.text(value)


class Schema:
    """The settings in their order, by name."""

    def __init__(self, settings: Iterable[Setting]) -> None:
        self._settings = {setting.name: setting for setting in settings}

    def __iter__(self) -> Iterator[Setting]:
        return iter(self._settings.values())

    def __len__(self) -> int:
        return len(self._settings)

    def __contains__(self, name: object) -> bool:
        return name in self._settings

    def __getitem__(self, name: str) -> Setting:
        return self._settings[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._settings)

    def on(self, layer: Layer) -> tuple[Setting, ...]:
        """The settings that may be set on ``layer``."""
        return tuple(s for s in self if s.allowed_on(layer))

    def find(self, raw: str) -> Setting:
        """The setting named ``raw`` (as typed: any case, ``-`` for ``_``)."""
        name = raw.strip().lower().replace("-", "_")
        if name not in self._settings:
            raise InvalidSetting(
                t(
                    "unknown setting '{raw}': valid settings are {names}",
                    raw=raw,
                    names=", ".join(self._settings),
                )
            )
        return self._settings[name]

    def defaults(self, environment: Mapping[str, Any]) -> dict[str, Any]:
        """Each setting's value below every layer; ``environment`` holds the values of the
        ``env`` fields (``default_model=…``)."""
        missing = sorted({s.env for s in self if s.env and s.env not in environment})
        if missing:
            raise TypeError(f"the environment's defaults need {', '.join(missing)}")
        return {s.name: environment[s.env] if s.env else s.default for s in self}

    def environment_names(self) -> tuple[str, ...]:
        """The ``Settings`` fields the defaults come from."""
        return tuple(dict.fromkeys(s.env for s in self if s.env))

    def declaring(self, *, mcp_servers: Iterable[str]) -> Schema:
        """This schema with the names only the running service knows: the MCP servers the
        operator declared (``MCP_SERVERS``). Without it, ``mcp_servers`` refuses every name,
        so a path that forgot to say which servers exist cannot enable an unknown one."""
        names = tuple(mcp_servers)
        return Schema(_with_names(setting, "mcp_servers", names) for setting in self)


MAX_SUGGESTED_PROMPTS: Final = 4
"""Slack's ``assistant.threads.setSuggestedPrompts`` shows up to four prompts."""
MAX_PROMPT_CHARS: Final = 150
"""A prompt is the button's title and the message it sends; a short sentence."""
DEFAULT_SUGGESTED_PROMPTS: Final = (
    N_("Summarise this channel"),
    N_("Explain a concept to me in simple terms"),
    N_("Help me write a clear, friendly message"),
    N_("Brainstorm ideas with me"),
)
"""In English here; shown in the reader's language (``bot.i18n.t``) wherever they are the
value in force, and a prompt an admin typed is shown as typed."""
MAX_LOADING_MESSAGES: Final = 10
"""Slack's ``assistant.threads.setStatus`` rotates at most ten loading messages."""
MAX_LOADING_MESSAGE_CHARS: Final = 100
DEFAULT_LOADING_MESSAGES: Final = (
    N_("Reading the thread…"),
    N_("Thinking it through…"),
    N_("Writing an answer…"),
)


HOSTED_TOOLS: Final = ("web_search", "file_search", "code_interpreter")
"""Tools the model endpoint runs itself, passed through in the request's ``tools``."""
MAX_MCP_SERVERS: Final = 16
MAX_VECTOR_STORES: Final = 16


def _count(unit: str, zero: str) -> WholeNumber:
    return WholeNumber(0, MAX_COUNT, unit=unit, zero=zero)


SCHEMA: Final = Schema(
    [
        Setting(
            "model",
            Name(MAX_MODEL_NAME_CHARS, noun=N_("a model name")),
            help=N_("the model that answers"),
            label=N_("Model"),
            env="default_model",
            from_catalogue=True,
        ),
        Setting(
            "instructions",
            Text(MAX_INSTRUCTIONS_CHARS),
            help=N_("the system instructions, sent on every turn"),
            label=N_("Instructions"),
            env="default_instructions",
        ),
        Setting(
            "temperature",
            Number(0, 2),
            help=N_("sampling temperature"),
            label=N_("Temperature (0 to 2)"),
        ),
        Setting("top_p", Number(0, 1), help=N_("nucleus sampling"), label="Top p (0 to 1)"),
        Setting(
            "max_output_tokens",
            WholeNumber(16, MAX_OUTPUT_TOKENS_LIMIT),
            help=N_("answer length cap"),
            label=N_("Max output tokens"),
        ),
        Setting(
            "reasoning_effort",
            Choice(("low", "medium", "high")),
            help=N_("reasoning effort, for reasoning models"),
            label=N_("Reasoning effort"),
        ),
        Setting(
            "reasoning_summary",
            OnOff(),
            help=N_("ask reasoning models for a summary"),
            label=N_("Reasoning summary"),
        ),
        Setting(
            "truncation",
            Choice(("auto", "disabled")),
            help=N_("drop the oldest context when a thread outgrows the model"),
            label=N_("Truncation"),
            default="auto",
        ),
        Setting(
            "require_mention",
            OnOff(),
            help=N_("thread follow-ups must mention the bot"),
            label=N_("Follow-ups need a mention"),
            default=False,
        ),
        Setting(
            "enabled",
            OnOff(),
            help=N_("the bot answers in this channel"),
            label=N_("Bot answers in this channel"),
            default=True,
        ),
        Setting(
            "daily_token_budget",
            _count(N_("tokens"), N_("no budget")),
            help=N_("tokens per day for this channel (0 = no budget)"),
            label=N_("Daily token budget (0 = none)"),
            default=0,
        ),
        Setting(
            "workspace_daily_token_budget",
            _count(N_("tokens"), N_("no budget")),
            help=N_("tokens per day for the whole workspace (0 = no budget)"),
            label=N_("Workspace daily token budget (0 = none)"),
            layers=WORKSPACE_ONLY,
            default=0,
        ),
        Setting(
            "user_hourly_requests",
            _count(N_("questions"), N_("no limit")),
            help=N_("questions one person may ask per hour (0 = no limit)"),
            label=N_("Questions per person per hour (0 = no limit)"),
            default=0,
        ),
        Setting(
            "conversation_state",
            Choice(("auto", "chain", "transcript")),
            help=N_(
                "how follow-ups carry the conversation: chain (previous_response_id), "
                "transcript (the bot re-sends it) or auto (chains, and switches to transcripts "
                "when the endpoint ignores them)"
            ),
            label=N_("Conversation state"),
            env="conversation_state",
        ),
        Setting(
            "suggested_prompts",
            TextList(MAX_SUGGESTED_PROMPTS, MAX_PROMPT_CHARS, separator="\n", one_line="|"),
            help=N_("prompts offered when someone opens the assistant pane (up to 4)"),
            label=N_("Suggested prompts (one per line)"),
            layers=WORKSPACE_ONLY,
            default=DEFAULT_SUGGESTED_PROMPTS,
        ),
        Setting(
            "loading_messages",
            TextList(MAX_LOADING_MESSAGES, MAX_LOADING_MESSAGE_CHARS, separator="\n", one_line="|"),
            help=N_("what Slack shows, in turn, while the model works (up to 10)"),
            label=N_("Loading messages (one per line)"),
            layers=WORKSPACE_ONLY,
            default=DEFAULT_LOADING_MESSAGES,
        ),
        Setting(
            "language",
            Choice((AUTO, *SUPPORTED)),
            help=N_(
                "the language of the bot's own words (notes, help, forms): auto (each "
                "person's Slack language) or one for everyone"
            ),
            label=N_("Language of the bot's messages"),
            layers=WORKSPACE_ONLY,
            default=AUTO,
        ),
        Setting(
            "mcp_servers",
            NameList(MAX_MCP_SERVERS, names=(), what=N_("MCP servers (MCP_SERVERS)")),
            help=N_("MCP servers whose tools the model may call (names from MCP_SERVERS)"),
            label=N_("Tool servers (MCP, comma-separated)"),
        ),
        Setting(
            "hosted_tools",
            NameList(len(HOSTED_TOOLS), names=HOSTED_TOOLS, what=N_("hosted tools")),
            help=N_(
                "tools the model endpoint runs itself: web_search, file_search, code_interpreter"
            ),
            label=N_("Hosted tools (comma-separated)"),
        ),
        Setting(
            "vector_store_ids",
            TextList(MAX_VECTOR_STORES, 200, separator=",", words=True),
            help=N_("vector store ids that file_search searches"),
            label=N_("Vector stores for file_search (comma-separated ids)"),
        ),
    ]
)


def _with_names(setting: Setting, name: str, names: tuple[str, ...]) -> Setting:
    if setting.name != name or not isinstance(setting.kind, NameList):
        return setting
    return replace(setting, kind=replace(setting.kind, names=names))


def show_value(name: str, value: Any, *, schema: Schema = SCHEMA) -> str:
    """A value of setting ``name`` as people read it; also for names the schema no longer has
    (an old audit row)."""
    if name in schema:
        return schema[name].show(value)
    if value is None:
        return t(NOT_SET)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
