"""User-facing errors: bad input that the CLI reports as one clear message with exit code 2."""


class TrustaiUserError(Exception):
    """Bad input from the user: says what is wrong, where, and how to fix it.

    The CLI prints ``str(error)`` without a traceback and exits with code 2.
    """

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        parts = [f"{where}: {what}" if where else what]
        if fix:
            parts.append(f"How to fix: {fix}")
        super().__init__("\n".join(parts))
