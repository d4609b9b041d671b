"""The `transferlab` command: `main` parses (`parser`), runs the command (`commands`) and turns the errors a user
is meant to see into one line and an exit code; the work is done by the Python API.

It starts at once: this module imports nothing heavy, and each command imports the libraries it needs when it
runs (`--help`, `backbones` and argument errors load no torch).
"""

from __future__ import annotations

import errno
import logging
import os
import sys

from transferlab.cli.parser import build_parser
from transferlab.errors import InvalidSetting, TransferlabError, UsageError

log = logging.getLogger("transferlab")
# the machine's refusals, not bugs: one line, exit 1 (a full disk, no permission, a read-only folder, a quota)
MACHINE_ERRORS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT}


def _log_to_stderr(level: int) -> None:
    """transferlab's own messages on stderr, one line each; other libraries' chatter (the ONNX optimizer's dozens of
    "Replaced initializer" lines) stays at their debug level, unseen, unless it is a warning."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("transferlab: %(message)s"))
    handler.set_name("transferlab-cli")
    log.handlers = [h for h in log.handlers if h.get_name() != "transferlab-cli"] + [handler]
    log.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    try:
        from transferlab.cli.commands import COMMANDS

        return COMMANDS[args.command](args)
    except InvalidSetting as error:  # named as the shell wrote it: --seeds, not seeds
        print(f"error: {error.as_flag()}", file=sys.stderr)
        return 2
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TransferlabError as error:  # expected failures; anything else is a bug and shows its traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the commands keep and report what had finished; here only the line that says so
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `transferlab predict RUN photos/ | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    except OSError as error:
        if error.errno not in MACHINE_ERRORS:
            raise  # anything else is a bug and shows its traceback
        print(f"error: {error.strerror}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    finally:
        distributed = sys.modules.get("torch.distributed")  # only if a command loaded torch
        if distributed is not None and distributed.is_available() and distributed.is_initialized():
            distributed.destroy_process_group()
