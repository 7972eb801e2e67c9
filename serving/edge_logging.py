"""Log hygiene of the service worker: one line per record, and rejected input never logged.

* Every handler gets :class:`OneLineFilter`: control characters in a record's message (CR, LF,
  NUL, ANSI escapes, Unicode line separators), which come from request data such as a path
  with ``%0d%0a`` in BentoML's access log, are written as escapes (``\\r``, ``\\x00``), and
  every line of a traceback is indented, so a line that starts at column 0 is a real record.
* BentoML logs every request its schema rejects as an ERROR with a traceback, and pydantic's
  traceback carries the rejected values (card data one day). :class:`RejectedInputFilter`
  turns those records into one INFO line: method, path, status, and each error's field path
  and type; never the values.
"""

from __future__ import annotations

import logging
import re
import traceback

from pydantic import ValidationError

# The logger of bentoml._internal.server.http_app.log_exception, which BentoML's app calls for
# every exception of an API call (bentoml 1.4: _bentoml_impl/server/app.py).
BENTOML_EXCEPTION_LOGGER = "bentoml._internal.server.http_app"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}
MAX_LOC_PART = 40
MAX_ERRORS_LOGGED = 5


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in NAMED:
        return NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape(text: str) -> str:
    """``text`` with every control character written as an escape sequence."""
    return CONTROL.sub(_escape_one, text)


def _indented(text: str) -> str:
    """A multi-line text with every line indented and its control characters escaped."""
    lines = CONTROL_BUT_NEWLINE.sub(_escape_one, text.rstrip("\n")).split("\n")
    return "\n".join("  " + line for line in lines)


class OneLineFilter(logging.Filter):
    """A handler filter: the message on one line, tracebacks indented (see the module)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops one."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format call: the handler reports it as usual
            return True
        # A trailing newline (some libraries end messages with one) is dropped, not escaped.
        record.msg, record.args = escape(message.rstrip("\r\n")), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _indented("".join(traceback.format_exception(*record.exc_info)))
        if record.stack_info:
            record.stack_info = _indented(record.stack_info)
        return True


def describe_errors(exc: ValidationError) -> str:
    """``field.path error_type`` for each error (the first few), without any input value."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    parts = [
        ".".join(str(part)[:MAX_LOC_PART] for part in error["loc"]) + f" {error['type']}"
        if error["loc"]
        else f"(body) {error['type']}"
        for error in errors[:MAX_ERRORS_LOGGED]
    ]
    if len(errors) > MAX_ERRORS_LOGGED:
        parts.append(f"and {len(errors) - MAX_ERRORS_LOGGED} more")
    return "; ".join(parts)


class RejectedInputFilter(logging.Filter):
    """A filter of BentoML's exception logger: a rejected request becomes one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite validation-error records; pass every other record unchanged."""
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, ValidationError):
            return True
        args = record.args if isinstance(record.args, tuple) and len(record.args) >= 2 else "??"
        path, method = args[0], args[1]
        record.msg = "rejected %s %s: 400 %s"
        record.args = (method, path, describe_errors(exc))
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _all_handlers() -> set[logging.Handler]:
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    return {handler for logger in loggers for handler in logger.handlers}


def install_log_hygiene() -> None:
    """Add the filters to the handlers configured now and to BentoML's exception logger."""
    for handler in _all_handlers():
        if not any(isinstance(f, OneLineFilter) for f in handler.filters):
            handler.addFilter(OneLineFilter())
    exceptions = logging.getLogger(BENTOML_EXCEPTION_LOGGER)
    if not any(isinstance(f, RejectedInputFilter) for f in exceptions.filters):
        exceptions.addFilter(RejectedInputFilter())
