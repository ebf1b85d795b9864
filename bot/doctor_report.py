"""How ``python -m bot doctor`` reports: one line per check (``ok``, ``warn`` or ``FAIL`` with
an indented ``fix:``), every line redacted (``bot.redaction``), and the two outcomes a check
raises besides success."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.redaction import Redactor

__all__ = ["CheckFailed", "CheckWarning", "Report"]


class CheckFailed(Exception):
    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


class CheckWarning(Exception):
    """The check could not be made; not a failure."""


@dataclass
class Report:
    failed: bool = False
    redact: Redactor = field(default_factory=Redactor)
    """Replaced by one that knows the configured secrets once the settings load."""

    def _line(self, text: str) -> None:
        print(self.redact(text), flush=True)

    def ok(self, name: str, detail: str) -> None:
        self._line(f"ok   {name}: {detail}")

    def warn(self, name: str, detail: str) -> None:
        self._line(f"warn {name}: {detail}")

    def fail(self, name: str, problem: str, fix: str) -> None:
        self.failed = True
        self._line(f"FAIL {name}: {problem}")
        self._line(f"     fix: {fix}")

    async def run(self, name: str, check: Callable[[], Awaitable[str]]) -> bool:
        try:
            self.ok(name, await check())
        except CheckFailed as exc:
            self.fail(name, exc.problem, exc.fix)
            return False
        except CheckWarning as exc:
            self.warn(name, str(exc))
        except Exception as exc:  # a check must report, whatever breaks
            self.fail(
                name,
                f"the check itself failed ({type(exc).__name__}: {str(exc)[:200]})",
                "see the message; run with LOG_LEVEL=DEBUG for details",
            )
            return False
        return True
