"""User-facing errors.

Everything a user can cause (bad config, missing data, a file that is not a ticket...) raises a subclass of
:class:`SltError`. The CLI prints its message on one line and exits with code 2; anything else is a bug and
keeps its traceback.
"""


class SltError(Exception):
    """An error caused by the user's input; the message names the file, node or parameter."""

    exit_code = 2


class ConfigError(SltError):
    """A setting is unknown, missing or out of range."""


class DataError(SltError):
    """A dataset file is missing, corrupt or in the wrong format."""


class TicketError(SltError):
    """A ticket file is missing, corrupt or not a ticket."""


class RunDirError(SltError):
    """A file of a search's run directory is damaged or disagrees with the rest of the run
    (:mod:`slt_deploy.run_files`)."""


class ExportError(SltError):
    """A network or graph cannot be exported or read back."""


class MissingDependencyError(SltError):
    """An optional dependency (e.g. Lava) is needed for this feature and is not installed."""


class OutputError(SltError):
    """An output file or folder cannot be written: it is not a regular file, its folder is missing or not
    writable, or the disk is full."""


class SettingConflict(ConfigError):
    """A setting that is valid alone but disagrees with the data (or another setting): ``--num-classes 5, but
    the dataset mnist has labels 0-9``. It keeps the setting's dotted name and value so that the command line,
    which knows whether the value came from a flag or a config file, can say so (:meth:`with_origin`)."""

    def __init__(self, setting: str, value=None, conflict: str = ""):
        if not conflict:  # one message, as every SltError is re-raised with a prefix (``type(exc)(f"{where}: ..")``)
            self.setting = self.value = None
            self.conflict = setting
            super().__init__(setting)
            return
        self.setting, self.value, self.conflict = setting, value, conflict
        super().__init__(f"{setting}={value}, but {conflict}")

    def with_origin(self, origin: str) -> "ConfigError":
        """The same error with the setting named as the user gave it (``--num-classes 5``, ``cfg.yaml: ...``)."""
        return ConfigError(f"{origin}, but {self.conflict}" if self.setting else self.conflict)
