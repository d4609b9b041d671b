"""The allocator setting applies once on Linux/glibc and stands aside when the user chose allocator settings."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = "from transferlab.utils.machine import keep_freed_memory as k; print(k(), k())"


def _run(env: dict) -> str:
    return subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_allocator_is_tuned_once_on_glibc_linux():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    expected = "True True" if sys.platform == "linux" and os.confstr("CS_GNU_LIBC_VERSION") else "False False"
    assert _run(env) == expected


def test_allocator_is_left_alone_when_the_user_set_malloc_options():
    assert _run({**os.environ, "MALLOC_ARENA_MAX": "2"}) == "False False"
