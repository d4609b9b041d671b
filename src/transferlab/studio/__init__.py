"""The studio: the whole loop on one local page (`transferlab studio PHOTOS`): look at the photos and fix them
(`workspace`, every change in the `journal`), train (`jobs`: fit or compare as a child process, progress read from
the run folders), see the results, try the model and ship it. A view: the library does the work (`app`)."""

from transferlab._lazy import lazy_exports

_EXPORTS = {
    "create_studio": "app",
    "studio": "app",
    "Journal": "journal",
    "Workspace": "workspace",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
