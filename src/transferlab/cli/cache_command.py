"""`transferlab cache`: the per-photo store's size by space, its limit (kept for later runs), clearing it."""

from __future__ import annotations

import argparse

from transferlab.errors import UsageError


def cmd_cache(args: argparse.Namespace) -> int:
    from transferlab.store import open_store
    from transferlab.store.photos import parse_size

    store = open_store()
    if args.limit is not None:
        try:
            store.save_limit(parse_size(args.limit))
        except ValueError as error:
            raise UsageError(f"--limit: {error}") from None
        freed = store.trim()
        print(f"limit set to {store.limit / 1e9:.1f} GB" + (f"; {freed / 1e6:.0f} MB freed" if freed else ""))
    if args.clear:
        print(f"cleared {store.clear() / 1e6:.0f} MB from {store.root}")
        return 0
    usage = store.usage()
    print(f"{usage.root}: {usage.entries} entries, {usage.bytes / 1e6:.0f} MB of {usage.limit / 1e9:.1f} GB")
    for space in usage.spaces:
        print(f"  {space.bytes / 1e6:9.1f} MB  {space.entries:7d}  {space.name}")
    return 0


CACHE_COMMANDS = {"cache": cmd_cache}
