"""The one error of the config package: a setting that cannot be used, located in its file.

Its own module, importing nothing, so that the model (whose checks raise it), the validation
engine and the loader can all name it without importing one another.
"""


class ConfigError(Exception):
    """A setting that cannot be used. str() is one sentence: '<source> line <n>: <message>'."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None,
                 line: int | None = None) -> None:
        super().__init__(message)
        self.message = message  # the sentence without the location, e.g. for a settings form
        self.key = key  # dotted, e.g. "motion.sensitivity" or "privacy.masks[1]"
        self.source = source
        self.line = line

    def __str__(self) -> str:
        where = " ".join(p for p in (self.source, self.line and f"line {self.line}") if p)
        return f"{where}: {self.message}" if where else self.message

    def located(self, source: str | None, line: int | None) -> "ConfigError":
        return ConfigError(self.message, key=self.key, source=source, line=line)
