"""The compiler's user-facing error (kept in its own module so every compile stage can raise it)."""

from ..errors import SltError


class CompileError(SltError):
    """A NIR graph cannot be mapped to Lava/Loihi: the message names the node (or layer) and the reason."""
